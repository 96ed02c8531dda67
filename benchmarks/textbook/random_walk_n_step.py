"""Figure 7.2 of Sutton & Barto (2018): n-step TD prediction on the 19-state random walk. The average RMS
error over the 19 states and the first 10 episodes, against the step size alpha, one curve per n,
averaged over 100 runs. Writes benchmarks/plots/textbook-random_walk_n_step.png and
benchmarks/textbook/random_walk_n_step.md.

    python benchmarks/textbook/random_walk_n_step.py
"""

import contextlib
import importlib.util
import io
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_VALUES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
RUNS = 100  # as in the book
EPISODES = 10  # the book averages over the first 10 episodes
# alpha in steps of 0.05 for n < 32; from n = 32 on the curves leave the plot's top by alpha = 0.2, so there
# steps of 0.02 up to 0.1 (where their minima are) and of 0.1 after (the whole figure stays within minutes)
ALPHAS, LARGE_N = np.linspace(0, 1, 21), 32
LARGE_N_ALPHAS = np.concatenate([np.linspace(0, 0.08, 5), np.linspace(0.1, 1, 10)])
RMS_LIMITS = (0.25, 0.55)  # the book's y axis
ALPHA_ZERO_RMS = np.sqrt(0.3)  # V = 0 everywhere: the RMS of v_pi itself over the 19 states


def load_n_step_sarsa():
    spec = importlib.util.spec_from_file_location("n_step_sarsa", ROOT / "algorithms" / "n_step_sarsa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_rms(n_step_sarsa, n: int, alpha: float, seed: int) -> float:
    """The RMS error after each of the first EPISODES episodes of one run, averaged."""
    args = n_step_sarsa.Args(prediction=True, env_id=n_step_sarsa.WALK_ID, n_step=n, learning_rate=float(alpha),
                             gamma=1.0, total_episodes=EPISODES, seed=seed, eval_episodes=1,
                             total_timesteps=EPISODES * n_step_sarsa.WALK_TIME_LIMIT)  # the episodes, not steps, end it
    with contextlib.redirect_stdout(io.StringIO()):  # one summary line per run is noise here
        rms_errors = n_step_sarsa.train(args)["rms_errors"]
    assert len(rms_errors) == EPISODES
    return float(np.mean(rms_errors))


def main():
    n_step_sarsa = load_n_step_sarsa()
    os.chdir(tempfile.mkdtemp())  # runs/ lands there, not in the repository
    start = time.time()
    alphas, curves = {}, {}  # per n: its alpha grid, and each run's average RMS at each alpha, (RUNS, len(grid))
    for n in N_VALUES:
        alphas[n] = LARGE_N_ALPHAS if n >= LARGE_N else ALPHAS
        curves[n] = np.array([[mean_rms(n_step_sarsa, n, alpha, seed) for alpha in alphas[n]]
                              for seed in range(1, RUNS + 1)])
        print(f"n = {n}: done at {(time.time() - start) / 60:.1f} min", flush=True)
    minutes = (time.time() - start) / 60

    plt.figure(figsize=(7, 4.5))
    for n in N_VALUES:
        plt.plot(alphas[n], curves[n].mean(axis=0), label=f"n = {n}")
    plt.ylim(*RMS_LIMITS)
    plt.xlim(0, 1)
    plt.xlabel("α")
    plt.ylabel(f"Average RMS error over 19 states and first {EPISODES} episodes")
    plt.title(f"n-step TD on the 19-state random walk (Figure 7.2), {RUNS} runs")
    plt.legend(fontsize=8, ncol=2)
    plot = ROOT / "benchmarks" / "plots" / "textbook-random_walk_n_step.png"
    plt.savefig(plot, dpi=120, bbox_inches="tight")

    rows = []
    for n in N_VALUES:
        mean, standard_error = curves[n].mean(axis=0), curves[n].std(axis=0) / np.sqrt(RUNS)
        best = int(np.argmin(mean))
        rows.append(f"| {n} | {alphas[n][best]:.2f} | {mean[best]:.3f} ± {standard_error[best]:.3f} | {mean[0]:.4f} | "
                    f"{mean[-1]:.3f} |")
    best_n = min(N_VALUES, key=lambda n: curves[n].mean(axis=0).min())
    best_alpha = alphas[best_n][int(np.argmin(curves[best_n].mean(axis=0)))]
    fragment = f"""### n-step TD prediction: the 19-state random walk (Sutton & Barto 2018, Figure 7.2)

`python benchmarks/textbook/random_walk_n_step.py` ({RUNS} runs per (n, α), seeds 1–{RUNS}, {minutes:.1f} min wall time, one process)

![n-step TD: average RMS error against alpha, one curve per n](benchmarks/plots/textbook-random_walk_n_step.png)

`algorithms/n_step_sarsa.py --prediction --env-id LucidRL/RandomWalk19-v0 --total-episodes {EPISODES} --gamma 1`
with `--n-step` n and `--learning-rate` α, V initialised to 0. Measure (the book's): after each episode, the
root mean square over the 19 states of V − v_π; averaged over the first {EPISODES} episodes and the {RUNS} runs.
α grid: steps of 0.05 for n < {LARGE_N}; for n ≥ {LARGE_N}, whose curves leave the plot's top before α = 0.2, steps of
0.02 up to 0.1 and of 0.1 after (this keeps the whole figure within a few minutes on one core; a best α is
only as fine as its grid). The walk follows the uniform random policy whatever V is, so a seed gives the
same episodes for every n and α: the curves differ by the algorithm only, not by sampling noise.

| n | best α | average RMS at best α (± s.e. over runs) | α = 0 | α = 1 |
|---|---|---|---|---|
{chr(10).join(rows)}

At α = 0 nothing is learned and V stays 0: the RMS error is √0.3 = {ALPHA_ZERO_RMS:.4f} for every n, as it must be.
Lowest overall: n = {best_n} at α = {best_alpha:.2f}.

Book (Figure 7.2, 100 runs, read from the plot): the best is near n = 4, α ≈ 0.3, at an average RMS error
of about 0.27; intermediate n beat both extremes (n = 1, TD(0), and large n, towards Monte Carlo).
"""
    (ROOT / "benchmarks" / "textbook" / "random_walk_n_step.md").write_text(fragment)
    print(fragment)


if __name__ == "__main__":
    main()
