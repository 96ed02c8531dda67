"""Mountain Car with tile coding and eligibility traces, as in Sutton & Barto (2018): Figure 10.1 (the
cost-to-go function learned by semi-gradient SARSA in one run), Figure 12.10 (SARSA(λ) with replacing
traces: steps per episode over the first 50 episodes against α, one curve per λ) and Figure 12.11
(true online SARSA(λ) against accumulating and replacing traces at λ = 0.9). All from
algorithms/sarsa_lambda.py's train(), without the 200-step limit of MountainCar-v0 (the book has none).
Writes benchmarks/plots/textbook-mountain_car-*.png and benchmarks/textbook/mountain_car.md.

    python benchmarks/textbook/mountain_car.py [--runs 5]
"""

import argparse
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
NO_TIME_LIMIT = 100_000  # steps: the book's Mountain Car has no time limit; an episode this long means no learning
# Figure 10.1: one run of semi-gradient SARSA (λ = 0), the cost-to-go after these points of training
COST_TO_GO_ALPHA = 0.3  # times 1/8 per tiling (the value common reproductions of the figure use)
COST_TO_GO_AFTER = (("step", 428), ("episode", 12), ("episode", 104), ("episode", 1000), ("episode", 9000))
GRID = 40  # points per axis of the cost-to-go surface
POSITION, VELOCITY = (-1.2, 0.6), (-0.07, 0.07)
# Figures 12.10 and 12.11: mean steps per episode over the first EPISODES episodes, against alpha x 8
EPISODES = 50
ALPHAS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.6)
LAMBDAS = (0.0, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99)
METHODS = {"true online SARSA(λ)": dict(true_online=True), "SARSA(λ), replacing traces": dict(true_online=False,
           trace="replacing"), "SARSA(λ), accumulating traces": dict(true_online=False, trace="accumulating")}
OFF_CHART = 600  # steps per episode: a run still short of EPISODES episodes after EPISODES x this is off the chart
Y_LIMIT = (180, 300)  # the book's axes


def load_sarsa_lambda():
    spec = importlib.util.spec_from_file_location("sarsa_lambda", ROOT / "algorithms" / "sarsa_lambda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(module, **kwargs) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # one summary line per run is noise here
        return module.train(module.Args(max_episode_steps=NO_TIME_LIMIT, eval_episodes=1, **kwargs))


def cost_to_go(result) -> np.ndarray:
    """-max_a q(s, a) on a GRID x GRID mesh of (position, velocity): (GRID velocities, GRID positions)."""
    weights, coder = result["weights"], result["coder"]
    return np.array([[-weights[:, coder.tiles(np.array([position, velocity]))].sum(axis=1).max()
                      for position in np.linspace(*POSITION, GRID)] for velocity in np.linspace(*VELOCITY, GRID)])


def mean_steps_per_episode(module, runs: int, **kwargs) -> float:
    """Steps per episode over the first EPISODES episodes, averaged over seeds 1..runs; inf when a run
    has not finished them within EPISODES x OFF_CHART steps (beyond the book's axes either way), NaN when
    a run diverged (the script stops on a non-finite TD error)."""
    means = []
    for seed in range(1, runs + 1):
        try:
            with contextlib.redirect_stderr(io.StringIO()), np.errstate(over="ignore", invalid="ignore"):
                returns = train(module, seed=seed, total_episodes=EPISODES, total_timesteps=EPISODES * OFF_CHART, **kwargs)
        except SystemExit:  # the TD error became inf or NaN: the weights blew up
            return float("nan")
        if len(returns["episodic_returns"]) < EPISODES:
            return float("inf")
        means.append(-np.mean(returns["episodic_returns"]))  # reward -1 per step: steps = -return
    return float(np.mean(means))


def plot_cost_to_go(surfaces: dict) -> Path:
    positions, velocities = np.meshgrid(np.linspace(*POSITION, GRID), np.linspace(*VELOCITY, GRID))
    figure = plt.figure(figsize=(15, 3.6))
    for index, (label, surface) in enumerate(surfaces.items()):
        axes = figure.add_subplot(1, len(surfaces), index + 1, projection="3d")
        axes.plot_wireframe(positions, velocities, surface, linewidth=0.4)
        axes.set_title(label, fontsize=10)
        axes.set_xlabel("position", fontsize=8)
        axes.set_ylabel("velocity", fontsize=8)
        axes.tick_params(labelsize=6)
    figure.suptitle("Cost-to-go −max_a q(s, a) of semi-gradient SARSA on Mountain Car (Figure 10.1), one run")
    path = ROOT / "benchmarks" / "plots" / "textbook-mountain_car-figure-10-1.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_curves(curves: dict, title: str, name: str) -> Path:
    plt.figure(figsize=(6.5, 4.5))
    for label, values in curves.items():
        plt.plot(ALPHAS, np.minimum(values, Y_LIMIT[1] + 10), marker="o", markersize=3, label=label)
    plt.ylim(*Y_LIMIT)
    plt.xlabel("α × number of tilings (8)")
    plt.ylabel(f"steps per episode, first {EPISODES} episodes")
    plt.title(title, fontsize=10)
    plt.legend(fontsize=8)
    path = ROOT / "benchmarks" / "plots" / f"textbook-mountain_car-{name}.png"
    plt.savefig(path, dpi=120, bbox_inches="tight")
    return path


def table(curves: dict, first_column: str) -> str:
    header = f"| {first_column} | " + " | ".join(f"α = {alpha}/8" for alpha in ALPHAS) + " | best |\n"
    header += "|---" * (len(ALPHAS) + 2) + "|\n"
    rows = []
    for label, values in curves.items():
        cells = [f"{value:.0f}" if np.isfinite(value) else "diverged" if np.isnan(value) else f"> {OFF_CHART}"
                 for value in values]
        best = int(np.nanargmin(values))
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {values[best]:.0f} at α = {ALPHAS[best]}/8 |")
    return header + "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="seeds per (method, λ, α) cell of Figures 12.10/12.11")
    runs = parser.parse_args().runs
    module = load_sarsa_lambda()
    os.chdir(tempfile.mkdtemp())  # runs/ lands there, not in the repository
    start = time.time()

    surfaces = {}
    for unit, count in COST_TO_GO_AFTER:
        budget = dict(total_timesteps=count) if unit == "step" else dict(total_episodes=count, total_timesteps=10**8)
        result = train(module, true_online=False, lam=0.0, learning_rate=COST_TO_GO_ALPHA, **budget)
        surfaces[f"{unit} {count:,}"] = cost_to_go(result)
    cost_plot = plot_cost_to_go(surfaces)
    minutes_10_1 = (time.time() - start) / 60

    figure_12_10 = {f"λ = {lam}": [mean_steps_per_episode(module, runs, true_online=False, trace="replacing", lam=lam,
                                                           learning_rate=alpha) for alpha in ALPHAS] for lam in LAMBDAS}
    plot_12_10 = plot_curves(figure_12_10, f"SARSA(λ), replacing traces (Figure 12.10), {runs} runs", "figure-12-10")
    figure_12_11 = {name: [mean_steps_per_episode(module, runs, lam=0.9, learning_rate=alpha, **flags) for alpha in ALPHAS]
                    for name, flags in METHODS.items()}
    plot_12_11 = plot_curves(figure_12_11, f"λ = 0.9 (Figure 12.11), {runs} runs", "figure-12-11")
    minutes = (time.time() - start) / 60

    peaks = {label: float(surface.max()) for label, surface in surfaces.items()}
    fragment = f"""### SARSA(λ) with tile coding: Mountain Car (Sutton & Barto 2018, Figures 10.1, 12.10, 12.11)

`python benchmarks/textbook/mountain_car.py --runs {runs}` ({minutes:.1f} min wall time, one process;
Figure 10.1 alone {minutes_10_1:.1f} min). `algorithms/sarsa_lambda.py` with 8 tilings of 8 x 8 tiles hashed
into 4,096 weights per action, γ = 1, ε = 0 (the initial values 0 are optimistic against rewards of −1), and
no time limit (`--max-episode-steps {NO_TIME_LIMIT:,}`; MountainCar-v0's 200-step limit is not in the book).

![Cost-to-go after training, one run]({cost_plot.relative_to(ROOT)})

Figure 10.1: one run (seed 1) of semi-gradient SARSA (`--no-true-online --lam 0 --learning-rate {COST_TO_GO_ALPHA}`),
the cost-to-go −max_a q(s, a) after step 428 and episodes 12, 104, 1,000 and 9,000. Its peak, the
steps-to-goal the agent expects from its worst state: {", ".join(f"{label} {peak:.0f}" for label, peak in peaks.items())}.
As in the book, values of states never visited stay at 0 early on (the flat plateau the optimistic start explores
toward), and the final surface has the spiral ridge of states that must swing back once more.

![SARSA(λ) with replacing traces]({plot_12_10.relative_to(ROOT)})
![True online SARSA(λ) against accumulating and replacing traces]({plot_12_11.relative_to(ROOT)})

Mean steps per episode over the first {EPISODES} episodes, averaged over seeds 1–{runs} (the book averages 100
runs); "> {OFF_CHART}" marks a cell where a run had not finished {EPISODES} episodes after {EPISODES * OFF_CHART:,} steps,
"diverged" one where a run's weights blew up (the script stops on a non-finite TD error).

Figure 12.10 (replacing traces, `--no-true-online --trace replacing --lam λ --learning-rate α×8`):

{table(figure_12_10, "λ")}

Figure 12.11 (λ = 0.9):

{table(figure_12_11, "method")}

Book (Figures 12.10 and 12.11, 100 runs, read from the plots): the curves lie between about 180 and 300 steps per
episode; intermediate λ learn fastest and λ = 0 slowest at its best α, and larger λ tolerate only smaller α.
True online SARSA(λ) does best over the widest range of α; accumulating traces do worst and fail at the larger α.
"""
    (ROOT / "benchmarks" / "textbook" / "mountain_car.md").write_text(fragment)
    print(fragment)


if __name__ == "__main__":
    main()
