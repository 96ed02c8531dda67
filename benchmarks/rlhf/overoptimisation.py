"""Over-optimisation of a learned reward (Gao et al. 2022), made visible: rlhf_ppo.py at several KL
coefficients beta, the true hidden reward r* and the reward model's score it maximises, both against the
KL from the reference as training moves away from it. The proxy keeps rising with KL; r* follows it at
first, then peaks and falls where the policy exploits the reward model's errors, and a larger beta stops
the policy earlier on that road.

Per seed: rlhf_sft.py and rlhf_reward_model.py at their defaults, then
`rlhf_ppo.py --kl-coef BETA --train-steps 200` for each beta; every PPO iteration's figures come from its
train_log.csv. Writes benchmarks/plots/rlhf-overoptimisation.png and benchmarks/rlhf/overoptimisation.md.

    python benchmarks/rlhf/overoptimisation.py --seeds 1 2 3 --betas 0 0.01 0.03 0.1 0.3
"""

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PLOT = ROOT / "benchmarks" / "plots" / "rlhf-overoptimisation.png"
TRAIN_STEPS = 200


def run(script: str, flags: list, workdir: Path) -> Path:
    """Run algorithms/{script} in workdir; its newest run directory."""
    subprocess.run([sys.executable, str(ROOT / "algorithms" / script), *flags], cwd=workdir, check=True,
                   capture_output=True, text=True)
    return max((workdir / "runs").glob(f"rlhf__{script[:-3]}__*"), key=lambda path: path.stat().st_mtime)


def curves(seed: int, betas: list, workdir: Path) -> dict:
    """beta -> rows of (KL to the reference, reward-model score, r*), one per PPO iteration."""
    s = ["--seed", str(seed)]
    sft_dir = run("rlhf_sft.py", ["--save-model", *s], workdir)
    rm_dir = run("rlhf_reward_model.py", ["--reference-path", str(sft_dir / "reference.pt"), "--preferences",
                                          str(sft_dir / "preferences.jsonl"), "--save-model", *s], workdir)
    result = {}
    for beta in betas:
        ppo_dir = run("rlhf_ppo.py", ["--reference-path", str(sft_dir / "reference.pt"), "--reward-model-path",
                                      str(rm_dir / "reward_model.pt"), "--kl-coef", str(beta),
                                      "--train-steps", str(TRAIN_STEPS), *s], workdir)
        with open(ppo_dir / "train_log.csv") as file:
            result[beta] = [(float(row["kl_to_reference"]), float(row["reward_model_score"]), float(row["true_reward"]))
                            for row in csv.DictReader(file)]
    return result


def smooth(values: np.ndarray, window: int = 9) -> np.ndarray:
    """A centred moving average (the per-iteration figures are means over 256 samples, still noisy)."""
    padded = np.pad(values, window // 2, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def plot(results: dict, betas: list) -> None:
    figure, (true_axis, proxy_axis) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, len(betas)))
    for beta, colour in zip(betas, colours):
        for i, seed in enumerate(sorted(results)):
            rows = np.array(results[seed][beta])
            kl = smooth(rows[:, 0])
            label = f"β = {beta:g}" if i == 0 else None
            true_axis.plot(kl, smooth(rows[:, 2]), color=colour, lw=1.2, label=label)
            proxy_axis.plot(kl, smooth(rows[:, 1]), color=colour, lw=1.2, label=label)
    true_axis.set(title="true hidden reward r* (never seen in training)", xlabel="KL(π ‖ π_ref), nats per completion",
                  ylabel="mean r* of the iteration's samples")
    proxy_axis.set(title="reward-model score (what PPO maximises)", xlabel="KL(π ‖ π_ref), nats per completion",
                   ylabel="mean normalised score")
    for axis in (true_axis, proxy_axis):
        axis.grid(alpha=0.3)
    proxy_axis.legend(loc="lower right")
    figure.suptitle(f"rlhf_ppo.py, {TRAIN_STEPS} iterations, seeds {', '.join(map(str, sorted(results)))} "
                    "(one line per seed; moving average over 9 iterations)")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=110)


def render(results: dict, betas: list) -> str:
    seeds = sorted(results)
    lines = [
        "### Over-optimisation of the reward model (Gao et al. 2022)", "",
        f"`python benchmarks/rlhf/overoptimisation.py --seeds {' '.join(map(str, seeds))} --betas "
        f"{' '.join(f'{beta:g}' for beta in betas)}`: per seed, stages 1 and 2 at their defaults, then "
        f"`rlhf_ppo.py --kl-coef β --train-steps {TRAIN_STEPS}`; every iteration's mean r*, reward-model score and KL "
        "from train_log.csv (the samples it trained on).", "",
        f"![r* and the reward-model score against KL](benchmarks/plots/{PLOT.name})", "",
        "| β | KL at the end (nats) | score at the end | r* at the end | r* at its peak (iteration's KL) |",
        "|---|---|---|---|---|",
    ]
    for beta in betas:
        ends = np.array([np.mean(np.array(results[seed][beta])[-10:], axis=0) for seed in seeds])  # last 10 iterations
        peaks = []
        for seed in seeds:
            rows = np.array(results[seed][beta])
            true_smooth = smooth(rows[:, 2])
            best = int(np.argmax(true_smooth))
            peaks.append((true_smooth[best], smooth(rows[:, 0])[best]))
        peaks = np.array(peaks)
        lines.append(f"| {beta:g} | {ends[:, 0].mean():.2f} ± {ends[:, 0].std():.2f} | {ends[:, 1].mean():.2f} ± "
                     f"{ends[:, 1].std():.2f} | {ends[:, 2].mean():.2f} ± {ends[:, 2].std():.2f} | "
                     f"{peaks[:, 0].mean():.2f} (at KL {peaks[:, 1].mean():.1f}) |")
    lines += ["", "End figures: mean of the last 10 iterations, mean ± std over the seeds; the peak is that of the "
              "9-iteration moving average, averaged over the seeds. Without a penalty the score is still rising at the "
              "end while r* has passed its peak and fallen: the policy has moved on to what the reward model "
              "over-rates. A larger β holds the policy nearer the reference, short of the peak, where r* and the score "
              "still rise together; the price is a lower r* at the end of the run."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.01, 0.03, 0.1, 0.3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = {seed: curves(seed, args.betas, Path(work)) for seed in args.seeds}
    plot(results, args.betas)
    text = render(results, args.betas)
    (ROOT / "benchmarks" / "rlhf" / "overoptimisation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
