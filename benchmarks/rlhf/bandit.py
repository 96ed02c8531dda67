"""RLHF's exact check: on a bandit (one prompt, single-token completions) the KL-regularised objective
    max_pi  E_{y ~ pi}[r(y)] - beta KL(pi || pi_ref)
has the closed-form maximiser pi*(y) = pi_ref(y) exp(r(y) / beta) / Z (Eq. 4 of Rafailov et al. 2023).
This runs the four stage scripts on rlhf_sft.py's `--task bandit` through their own command lines, then
reads the saved models' next-token distributions at the one prompt (every token of the vocabulary, so
nothing here is sampled) and measures:
  - the reward model: Bradley-Terry identifies r / label_temperature only up to a constant, so with
    temperature 1 the scores minus r* should be the same number for every arm: their largest deviation
    from their mean;
  - PPO (rlhf_ppo.py --kl-coef beta) maximises the reward model's normalised score s(y) under the KL
    penalty: its optimum is pi_ref exp(s / beta) / Z; the total-variation distance to it;
  - DPO (rlhf_dpo.py --beta beta) fits the preferences' Bradley-Terry model, whose reward is r* itself
    (labels drawn with temperature 1): its optimum is pi_ref exp(r* / beta) / Z; the TV distance to it.
The reference's own distance from each optimum is given beside, as the scale of what was learned.

    python benchmarks/rlhf/bandit.py --seeds 1 2 3 --betas 0.25 0.5 1    # writes benchmarks/rlhf/bandit.md
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
SFT_FLAGS = ["--task", "bandit", "--save-model", "--train-steps", "500", "--num-pairs", "10000"]
RM_FLAGS = ["--save-model", "--train-steps", "2000"]  # to convergence: at its default 600 steps it is 0.15 off


def run(script: str, flags: list, workdir: Path) -> Path:
    """Run algorithms/{script} in workdir; its newest run directory."""
    subprocess.run([sys.executable, str(ROOT / "algorithms" / script), *flags], cwd=workdir, check=True,
                   capture_output=True, text=True)
    return max((workdir / "runs").glob(f"rlhf__{script[:-3]}__*"), key=lambda path: path.stat().st_mtime)


def trunk_outputs(checkpoint: dict, sequences: list) -> torch.Tensor:
    """The GRU outputs after the last token of each sequence (equal lengths), rebuilt from a stage's saved
    weights (every stage saves the same embedding + GRU trunk): (len(sequences), hidden)."""
    weights = checkpoint["model"]
    embedding = nn.Embedding.from_pretrained(weights["embedding.weight"])
    hidden_size, embedding_size = weights["gru.weight_hh_l0"].shape[1], weights["embedding.weight"].shape[1]
    gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
    gru.load_state_dict({name[len("gru."):]: value for name, value in weights.items() if name.startswith("gru.")})
    index = {word: i for i, word in enumerate(checkpoint["spec"]["vocab"])}
    tokens = torch.tensor([[index[word] for word in sequence] for sequence in sequences])
    with torch.no_grad():
        outputs, _ = gru(embedding(tokens))
    return outputs[:, -1]


def next_token_distribution(checkpoint: dict) -> np.ndarray:
    """pi(y | the bandit's prompt) over the whole vocabulary, from a policy's saved weights: (vocab,)."""
    prompt = ["<bos>", *checkpoint["spec"]["topics"], "<sep>"]
    last = trunk_outputs(checkpoint, [prompt])
    logits = last @ checkpoint["model"]["head.weight"].T + checkpoint["model"]["head.bias"]
    return logits.log_softmax(-1)[0].double().exp().numpy()


def reward_model_scores(checkpoint: dict) -> np.ndarray:
    """The reward model's raw score of every one-token completion of the prompt: (vocab,)."""
    spec = checkpoint["spec"]
    sequences = [["<bos>", *spec["topics"], "<sep>", word] for word in spec["vocab"]]
    last = trunk_outputs(checkpoint, sequences)
    scores = last @ checkpoint["model"]["head.weight"].T + checkpoint["model"]["head.bias"]
    return scores[:, 0].double().numpy()


def hidden_rewards(spec: dict) -> np.ndarray:
    """r*(y) of every token as a completion (the arms' numbers; 0 for every other token): (vocab,)."""
    return np.array([spec["lexicon"].get(word, 0.0) for word in spec["vocab"]])


def kl_regularised_optimum(reference: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """pi*(y) = pi_ref(y) exp(r(y) / beta) / Z, in log space so that no exponential overflows."""
    logits = np.log(reference) + reward / beta
    return np.exp(logits - np.logaddexp.reduce(logits))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def recovery_error(scores: np.ndarray, reward: np.ndarray, arms: np.ndarray) -> float:
    """The largest deviation of score - r* from its mean over the arms: 0 when the reward model holds r*
    up to a constant."""
    difference = scores[arms] - reward[arms]
    return float(np.abs(difference - difference.mean()).max())


def bradley_terry_fit(pairs_path: Path, vocab: list, ridge: float = 1e-4) -> np.ndarray:
    """The Bradley-Terry maximum-likelihood reward of every token from the pairs themselves (a table, no
    network): what a reward model or DPO can at best recover from this finite dataset. A small ridge
    penalty fixes the free constant and keeps tokens that lose (or win) every comparison finite; a token
    in no pair stays at 0. (vocab,)."""
    index = {word: i for i, word in enumerate(vocab)}
    rows = [json.loads(line) for line in pairs_path.read_text().splitlines() if line.strip()]
    chosen = torch.tensor([index[row["chosen"]] for row in rows])
    rejected = torch.tensor([index[row["rejected"]] for row in rows])
    rewards = torch.zeros(len(vocab), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([rewards], max_iter=1000, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def negative_log_likelihood() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -nn.functional.logsigmoid(rewards[chosen] - rewards[rejected]).mean() + ridge * (rewards ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(negative_log_likelihood)
    return rewards.detach().numpy()


def one_seed(seed: int, betas: list, workdir: Path) -> dict:
    s = ["--seed", str(seed)]
    sft_dir = run("rlhf_sft.py", [*SFT_FLAGS, *s], workdir)
    reference_path, pairs = sft_dir / "reference.pt", sft_dir / "preferences.jsonl"
    rm_dir = run("rlhf_reward_model.py", ["--reference-path", str(reference_path), "--preferences", str(pairs),
                                          *RM_FLAGS, *s], workdir)
    reference_checkpoint, rm_checkpoint = torch.load(reference_path), torch.load(rm_dir / "reward_model.pt")
    spec = reference_checkpoint["spec"]
    reference, reward = next_token_distribution(reference_checkpoint), hidden_rewards(spec)
    arms = np.array([word in spec["lexicon"] for word in spec["vocab"]])
    fitted = bradley_terry_fit(pairs, spec["vocab"])
    raw_scores = reward_model_scores(rm_checkpoint)
    normalised = (raw_scores - rm_checkpoint["score_mean"]) / (rm_checkpoint["score_std"] + 1e-8)  # what PPO gets
    result = {"recovery_error": recovery_error(raw_scores, reward, arms),
              "fit_error": recovery_error(fitted, reward, arms),
              "arms": [word for word in spec["vocab"] if word in spec["lexicon"]], "arm_rewards": reward[arms].tolist(),
              "score_minus_reward": (raw_scores - reward)[arms].tolist(), "betas": {}}
    for beta in betas:
        ppo_dir = run("rlhf_ppo.py", ["--reference-path", str(reference_path), "--reward-model-path",
                                      str(rm_dir / "reward_model.pt"), "--kl-coef", str(beta), "--save-model", *s], workdir)
        dpo_dir = run("rlhf_dpo.py", ["--reference-path", str(reference_path), "--preferences", str(pairs),
                                      "--beta", str(beta), "--save-model", *s], workdir)
        ppo_optimum = kl_regularised_optimum(reference, normalised, beta)
        dpo_optimum = kl_regularised_optimum(reference, reward, beta)
        ppo = next_token_distribution(torch.load(ppo_dir / "policy.pt"))
        dpo = next_token_distribution(torch.load(dpo_dir / "policy.pt"))
        result["betas"][beta] = {
            "ppo_tv": total_variation(ppo, ppo_optimum), "ppo_reference_tv": total_variation(reference, ppo_optimum),
            "dpo_tv": total_variation(dpo, dpo_optimum), "dpo_reference_tv": total_variation(reference, dpo_optimum),
            "ppo": ppo[arms].tolist(), "ppo_optimum": ppo_optimum[arms].tolist(),
            "dpo": dpo[arms].tolist(), "dpo_optimum": dpo_optimum[arms].tolist(),
            "reference": reference[arms].tolist()}
    return result


def render(results: dict, betas: list) -> str:
    seeds = sorted(results)

    def figure(key: str, beta: float) -> str:
        values = [results[seed]["betas"][beta][key] for seed in seeds]
        return f"{np.mean(values):.3f} (max {np.max(values):.3f})"

    first = results[seeds[0]]
    arms = first["arms"]
    lines = [
        "### RLHF's exact check on a bandit (issue 18)", "",
        f"`python benchmarks/rlhf/bandit.py --seeds {' '.join(map(str, seeds))} --betas {' '.join(map(str, betas))}`: "
        "one prompt, single-token completions, r* = "
        + ", ".join(f"{arm} {r:g}" for arm, r in zip(arms, first["arm_rewards"])) +
        " (`rlhf_sft.py --task bandit`, whose demonstrators favour the worse arms). For each seed: "
        f"`rlhf_sft.py {' '.join(SFT_FLAGS)}`, `rlhf_reward_model.py {' '.join(RM_FLAGS)}`, then "
        "`rlhf_ppo.py --kl-coef β` and `rlhf_dpo.py --beta β` at their defaults. The optimum of E[r] − β KL(π‖π_ref) is "
        "π* ∝ π_ref·exp(r/β) (Eq. 4 of Rafailov et al. 2023); PPO's r is the reward model's normalised score, "
        "DPO's is r* (the labels' Bradley–Terry reward at temperature 1). Distributions are read off the saved "
        "models over the whole vocabulary, nothing sampled. TV = total-variation distance, mean over seeds (max).", "",
        "| β | PPO: TV to π* | reference's TV to π* | DPO: TV to π* | reference's TV to π* |",
        "|---|---|---|---|---|",
    ]
    for beta in betas:
        lines.append(f"| {beta:g} | {figure('ppo_tv', beta)} | {figure('ppo_reference_tv', beta)} | "
                     f"{figure('dpo_tv', beta)} | {figure('dpo_reference_tv', beta)} |")
    errors = [results[seed]["recovery_error"] for seed in seeds]
    fit_errors = [results[seed]["fit_error"] for seed in seeds]
    beta = betas[len(betas) // 2]
    row = first["betas"][beta]
    lines += [
        "",
        f"The reward model recovers r* up to a constant: score − r* varies over the six arms by at most "
        f"{np.mean(errors):.3f} (mean over seeds; max {np.max(errors):.3f}); the Bradley–Terry maximum-likelihood "
        f"table fitted to the same pairs, the most any model can recover from them, deviates by {np.mean(fit_errors):.3f} "
        f"(max {np.max(fit_errors):.3f}). Seed {seeds[0]}, β {beta:g}, "
        "probability of each arm:", "",
        "| | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms),
        *(f"| {name} | " + " | ".join(f"{p:.3f}" for p in row[key]) + " |" for name, key in (
            ("reference π_ref", "reference"), ("PPO", "ppo"), ("π* of PPO's reward", "ppo_optimum"),
            ("DPO", "dpo"), ("π* of r*", "dpo_optimum"))),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "rlhf" / "bandit.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = {seed: one_seed(seed, args.betas, Path(work)) for seed in args.seeds}
    text = render(results, args.betas)
    Path(args.output).write_text(text)
    print(text)
    print(json.dumps(results, indent=1)[:2000])


if __name__ == "__main__":
    main()
