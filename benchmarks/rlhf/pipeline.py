"""The RLHF pipeline end to end, seed by seed, through the scripts' own command lines: stage 1
(rlhf_sft.py), the reward model, PPO with the KL penalty (and without it, to show over-optimisation),
and DPO at two betas. Writes benchmarks/rlhf/rlhf.md (a fragment of benchmarks.md) with every command.

    python benchmarks/rlhf/pipeline.py --seeds 1 2 3
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, flags: list, workdir: Path) -> tuple:
    """Run algorithms/{script} in workdir; (its newest run directory, its summary)."""
    subprocess.run([sys.executable, str(ROOT / "algorithms" / script), *flags], cwd=workdir, check=True,
                   capture_output=True, text=True)
    run_dir = max((workdir / "runs").glob(f"rlhf__{script[:-3]}__*"), key=lambda path: path.stat().st_mtime)
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def one_seed(seed: int, workdir: Path) -> dict:
    s = ["--seed", str(seed)]
    sft_dir, sft = run("rlhf_sft.py", ["--save-model", *s], workdir)
    reference, pairs = str(sft_dir / "reference.pt"), str(sft_dir / "preferences.jsonl")
    rm_dir, rm = run("rlhf_reward_model.py", ["--reference-path", reference, "--preferences", pairs, "--save-model", *s], workdir)
    ppo_flags = ["--reference-path", reference, "--reward-model-path", str(rm_dir / "reward_model.pt"), *s]
    _, ppo = run("rlhf_ppo.py", ppo_flags, workdir)
    unpenalised_dir, unpenalised = run("rlhf_ppo.py", ppo_flags + ["--kl-coef", "0", "--train-steps", "200"], workdir)
    with open(unpenalised_dir / "train_log.csv") as file:
        curve = [(int(row["iteration"]), float(row["reward_model_score"]), float(row["true_reward"]))
                 for row in csv.DictReader(file)]
    dpo_flags = ["--reference-path", reference, "--preferences", pairs, *s]
    _, dpo = run("rlhf_dpo.py", dpo_flags, workdir)
    _, dpo_tight = run("rlhf_dpo.py", dpo_flags + ["--beta", "0.5"], workdir)
    return {"sft": sft, "rm": rm, "ppo": ppo, "curve": curve, "dpo": dpo, "dpo_tight": dpo_tight}


def mean_std(values: list, digits: int = 2) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def render(results: dict) -> str:
    seeds = sorted(results)
    pick = lambda stage, key: [results[seed][stage][key] for seed in seeds]  # noqa: E731
    peaks = []
    for seed in seeds:
        curve = results[seed]["curve"]
        peak = max(curve, key=lambda row: row[2])
        peaks.append(f"seed {seed}: the score rises from {curve[0][1]:.2f} to {curve[-1][1]:.2f} while r* peaks at "
                     f"{peak[2]:.2f} (iteration {peak[0]}) and ends at {curve[-1][2]:.2f}")
    lines = [
        "### RLHF on a synthetic language (issue 18)", "",
        f"`python benchmarks/rlhf/pipeline.py --seeds {' '.join(map(str, seeds))}` runs the four stages in sequence, "
        "each reading the previous one's files, with the commands below (`$SFT` and `$RM` are the run directories of "
        "stages 1 and 2; `--seed N` on each). Mean ± std over the seeds; r* is the hidden reward that labelled the "
        "preferences (rlhf_sft.py's docstring), which the reward model, PPO and DPO never see. Win rates and KL are "
        "measured on 2,000 fresh prompts against the reference's samples.", "",
        "| script | command | result |", "|---|---|---|",
        f"| rlhf_sft.py | `python algorithms/rlhf_sft.py --save-model` | held-out completion loss "
        f"{mean_std(pick('sft', 'heldout_completion_loss'), 3)} nats/token; mean r* of the reference's samples "
        f"{mean_std(pick('sft', 'reference_true_reward_mean'))} against the demonstrations' "
        f"{mean_std(pick('sft', 'demonstration_true_reward_mean'))}; 12,000 labelled pairs |",
        f"| rlhf_reward_model.py | `python algorithms/rlhf_reward_model.py --reference-path $SFT/reference.pt "
        f"--preferences $SFT/preferences.jsonl --save-model` | held-out accuracy {mean_std(pick('rm', 'heldout_accuracy'), 3)} "
        f"against the Bayes-optimal {mean_std(pick('rm', 'bayes_optimal_accuracy'), 3)} (r*'s own accuracy on the same "
        f"noisy labels, 1,200 pairs); correlation of the scores with r* {mean_std(pick('rm', 'correlation_with_hidden_reward'), 3)} |",
        f"| rlhf_ppo.py | `python algorithms/rlhf_ppo.py --reference-path $SFT/reference.pt --reward-model-path "
        f"$RM/reward_model.pt` | r* {mean_std(pick('ppo', 'true_reward_mean'))} against the reference's "
        f"{mean_std(pick('ppo', 'reference_true_reward_mean'))}; win rate {mean_std(pick('ppo', 'win_rate'), 3)}; "
        f"KL to the reference {mean_std(pick('ppo', 'kl_to_reference'))} nats |",
        f"| rlhf_ppo.py, no KL penalty | the same with `--kl-coef 0 --train-steps 200` | the reward model's score keeps "
        f"rising while r* peaks and falls (over-optimisation of the proxy, Gao et al. 2022): {'; '.join(peaks)} |",
        f"| rlhf_dpo.py | `python algorithms/rlhf_dpo.py --reference-path $SFT/reference.pt --preferences "
        f"$SFT/preferences.jsonl` | β 0.1: r* {mean_std(pick('dpo', 'true_reward_mean'))}, win rate "
        f"{mean_std(pick('dpo', 'win_rate'), 3)}, KL {mean_std(pick('dpo', 'kl_to_reference'))} nats; `--beta 0.5`: "
        f"r* {mean_std(pick('dpo_tight', 'true_reward_mean'))}, win rate {mean_std(pick('dpo_tight', 'win_rate'), 3)}, "
        f"KL {mean_std(pick('dpo_tight', 'kl_to_reference'))} nats |", "",
        "The exact check on a bandit and the over-optimisation plot follow; still to come (issue 18): the Pendulum "
        "twin (Christiano et al. 2017).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    seeds = parser.parse_args().seeds
    with tempfile.TemporaryDirectory() as work:
        results = {seed: one_seed(seed, Path(work)) for seed in seeds}
    text = render(results)
    (ROOT / "benchmarks" / "rlhf" / "rlhf.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
