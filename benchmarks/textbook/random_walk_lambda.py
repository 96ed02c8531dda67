"""Figures 12.3, 12.6 and 12.8 of Sutton & Barto (2018): the off-line lambda-return algorithm, TD(lambda) and
true online TD(lambda) on the 19-state random walk. RMS error over the 19 states at the end of each episode,
averaged over the first 10 episodes and 100 runs, against alpha, one curve per lambda. Writes
benchmarks/plots/textbook-random_walk_lambda.png and benchmarks/textbook/random_walk_lambda.md.

    python benchmarks/textbook/random_walk_lambda.py
"""

import contextlib
import importlib.util
import io
import math
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"offline_lambda_return": "Off-line λ-return (Figure 12.3)", "td_lambda": "TD(λ) (Figure 12.6)",
           "true_online": "True online TD(λ) (Figure 12.8)"}
LAMBDAS = (0.0, 0.4, 0.8, 0.9, 0.95, 0.975, 0.99, 1.0)
# The book's x axis is alpha in [0, 1]; curves with large lambda leave the plot at small alpha, hence the
# finer steps there.
ALPHAS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RUNS = 100  # as in the book; run r uses seed r in every cell, so every cell sees the same 100 x 10 episodes
EPISODES = 10
CLIP = 0.55  # the book's y axis ends here
BLOWN_UP = 1.0  # a mean RMS error above this (the true values lie in [-0.9, 0.9]) counts as blown up


def load_td_lambda():
    spec = importlib.util.spec_from_file_location("td_lambda", ROOT / "algorithms" / "td_lambda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(td_lambda, method: str, lam: float, alpha: float) -> tuple:
    """Mean over RUNS of the mean RMS error of the first EPISODES episodes, and how many runs stopped
    on a NaN/inf (those count as infinite error)."""
    errors, stopped = [], 0
    for seed in range(1, RUNS + 1):
        args = td_lambda.Args(seed=seed, method=method, lam=lam, learning_rate=alpha, total_episodes=EPISODES,
                              eval_episodes=1)
        try:
            # one summary line per run is noise here; overflow warnings too (a blow-up is what we measure)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    np.errstate(over="ignore", invalid="ignore"):
                errors.append(np.mean(td_lambda.train(args)["rms_errors"]))
        except SystemExit:  # train() stopped on a NaN/inf weight
            errors.append(math.inf)
            stopped += 1
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.mean(errors)), stopped


def main():
    td_lambda = load_td_lambda()
    os.chdir(tempfile.mkdtemp())  # runs/ lands there, not in the repository
    start, start_cpu = time.time(), time.process_time()
    results = {(method, lam, alpha): cell(td_lambda, method, lam, alpha)
               for method in METHODS for lam in LAMBDAS for alpha in ALPHAS}
    minutes, cpu_minutes = (time.time() - start) / 60, (time.process_time() - start_cpu) / 60

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=True)
    for axis, (method, title) in zip(axes, METHODS.items()):
        for lam in LAMBDAS:
            curve = [min(results[method, lam, alpha][0], CLIP) for alpha in ALPHAS]
            axis.plot(ALPHAS, curve, label=f"λ = {lam:g}")
        axis.set_title(title)
        axis.set_xlabel("α")
        axis.set_ylim(0.2, CLIP + 0.01)
    axes[0].set_ylabel(f"RMS error over 19 states\n(first {EPISODES} episodes, {RUNS} runs; clipped at {CLIP})")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    plot = ROOT / "benchmarks" / "plots" / "textbook-random_walk_lambda.png"
    figure.savefig(plot, dpi=110, bbox_inches="tight")

    rows = []
    for lam in LAMBDAS:
        row = f"| {lam:g} |"
        for method in METHODS:
            best_alpha = min(ALPHAS, key=lambda alpha: results[method, lam, alpha][0])
            row += f" {results[method, lam, best_alpha][0]:.3f} at α = {best_alpha:g} |"
        rows.append(row)
    alpha_zero = sorted({round(results[method, lam, 0.0][0], 6) for method in METHODS for lam in LAMBDAS})
    blown = []
    for method, title in METHODS.items():
        per_lambda = {lam: [alpha for alpha in ALPHAS if results[method, lam, alpha][0] > BLOWN_UP] for lam in LAMBDAS}
        listed = "; ".join(f"λ {lam:g}: α ∈ {{{', '.join(f'{alpha:g}' for alpha in alphas)}}}"
                           for lam, alphas in per_lambda.items() if alphas) or "none"
        stopped = sum(results[method, lam, alpha][1] for lam in LAMBDAS for alpha in ALPHAS)
        blown.append(f"- {title}: {sum(map(len, per_lambda.values()))} of {len(LAMBDAS) * len(ALPHAS)} cells "
                     f"({listed}); runs stopped on a NaN/inf weight: {stopped} of {RUNS * len(LAMBDAS) * len(ALPHAS):,}")
    blown_lines = "\n".join(blown)
    fragment = f"""### Eligibility traces: the 19-state random walk (Sutton & Barto 2018, Figures 12.3, 12.6, 12.8)

`python benchmarks/textbook/random_walk_lambda.py` ({RUNS} runs per cell, seeds 1–{RUNS}, {minutes:.1f} min wall time and {cpu_minutes:.1f} min CPU time, one process
on a machine shared with other jobs)

![Off-line λ-return, TD(λ) and true online TD(λ) on the 19-state random walk](benchmarks/plots/textbook-random_walk_lambda.png)

`algorithms/td_lambda.py --total-episodes {EPISODES}` (γ = 1, weights from 0) with `--method`, `--lam` λ and
`--learning-rate` α on the grid α ∈ {{{", ".join(f"{alpha:g}" for alpha in ALPHAS)}}} (the book's
curves are denser; ours is coarser above α = 0.2, which keeps the run near 5 minutes of CPU time). Measure: the RMS error over the 19 states at the end of each episode,
averaged over the first {EPISODES} episodes and the {RUNS} runs; the plot clips it at {CLIP}, as the book does. Run r
uses seed r in every cell, so all cells see the same episodes (the uniform policy does not depend on w).

Best (lowest) mean RMS error per λ and method:

| λ | off-line λ-return (12.3) | TD(λ) (12.6) | true online TD(λ) (12.8) |
|---|---|---|---|
{chr(10).join(rows)}

At α = 0 the values stay 0 and every cell measures {", ".join(f"{value:.4f}" for value in alpha_zero)} (sqrt(0.3) = {math.sqrt(0.3):.4f}).

Cells that blew up (mean RMS error above {BLOWN_UP:g}, far off the plot):
{blown_lines}

Book (read from the figures, 100 runs, 10 episodes): Figure 12.3, the off-line λ-return algorithm is best at
intermediate λ, ≈ 0.25 near λ = 0.8; Figure 12.6, TD(λ) does about as well at small α (best ≈ 0.26 near
λ = 0.8) but at large α and large λ its error grows without bound, off the plot; Figure 12.8, true online TD(λ)
performs like the off-line λ-return algorithm (a little better) and stays stable where TD(λ) blows up.
"""
    (ROOT / "benchmarks" / "textbook" / "random_walk_lambda.md").write_text(fragment)
    print(fragment)


if __name__ == "__main__":
    main()
