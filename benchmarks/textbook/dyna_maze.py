"""Figure 8.2 of Sutton & Barto (2018): steps per episode on the Dyna maze for n = 0, 5, 50 planning
steps, episodes 2-50, averaged over 30 runs. Writes benchmarks/plots/textbook-dyna_maze.png and
benchmarks/textbook/dyna_maze.md.

    python benchmarks/textbook/dyna_maze.py
"""

import contextlib
import csv
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
PLANNING_STEPS = (0, 5, 50)
RUNS = 30  # as in the book
EPISODES = 50
SHORTEST_PATH = 14
NEAR_OPTIMAL = 20  # steps: the shortest path plus what epsilon = 0.1 exploration costs on it
FIRST_BUDGET = {0: 8_000, 5: 3_000, 50: 3_000}  # doubled for a run that has not finished 50 episodes


def load_dyna_q():
    spec = importlib.util.spec_from_file_location("dyna_q", ROOT / "algorithms" / "dyna_q.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def episode_lengths(dyna_q, planning_steps: int, seed: int) -> tuple:
    """Lengths of the first EPISODES episodes and the environment steps they took."""
    budget = FIRST_BUDGET[planning_steps]
    while True:
        with contextlib.redirect_stdout(io.StringIO()):  # one summary line per run is noise here
            result = dyna_q.train(dyna_q.Args(seed=seed, planning_steps=planning_steps, total_timesteps=budget,
                                              eval_episodes=1))
        with open(os.path.join(result["run_dir"], "episodes.csv")) as file:
            rows = list(csv.DictReader(file))
        if len(rows) >= EPISODES:
            return [int(row["episode_length"]) for row in rows[:EPISODES]], int(rows[EPISODES - 1]["global_step"])
        budget *= 2


def main():
    dyna_q = load_dyna_q()
    os.chdir(tempfile.mkdtemp())  # runs/ lands there, not in the repository
    start = time.time()
    lengths, steps = {}, {}
    for n in PLANNING_STEPS:
        runs = [episode_lengths(dyna_q, n, seed) for seed in range(1, RUNS + 1)]
        lengths[n] = np.array([run[0] for run in runs])  # (RUNS, EPISODES)
        steps[n] = np.array([run[1] for run in runs])
    minutes = (time.time() - start) / 60

    episodes = np.arange(2, EPISODES + 1)
    plt.figure(figsize=(7, 4.5))
    for n in PLANNING_STEPS:
        label = f"{n} planning steps" + (" (direct RL only)" if n == 0 else "")
        plt.plot(episodes, lengths[n][:, 1:].mean(axis=0), label=label)
    plt.axhline(SHORTEST_PATH, color="gray", linestyle="--", linewidth=0.8, label=f"shortest path ({SHORTEST_PATH})")
    plt.ylim(0, 800)
    plt.xlabel("Episodes")
    plt.ylabel("Steps per episode")
    plt.title(f"Dyna-Q on the Dyna maze (Figure 8.2), mean of {RUNS} runs")
    plt.legend()
    plot = ROOT / "benchmarks" / "plots" / "textbook-dyna_maze.png"
    plt.savefig(plot, dpi=120, bbox_inches="tight")

    rows = []
    for n in PLANNING_STEPS:
        mean = lengths[n].mean(axis=0)
        near = next((episode for episode in range(2, EPISODES + 1) if mean[episode - 1:].max() < NEAR_OPTIMAL), None)
        rows.append(f"| {n} | {mean[1]:.0f} | {mean[4]:.1f} | {mean[9]:.1f} | {mean[19]:.1f} | {mean[49]:.1f} | "
                    f"{lengths[n][:, 1:10].mean():.1f} | {near or '—'} | {np.median(steps[n]):,.0f} "
                    f"({steps[n].min():,}–{steps[n].max():,}) |")
    fragment = f"""### Dyna-Q: the Dyna maze (Sutton & Barto 2018, Figure 8.2)

`python benchmarks/textbook/dyna_maze.py` ({RUNS} runs per n, seeds 1–{RUNS}, {minutes:.1f} min wall time, one process)

![Dyna-Q steps per episode on the Dyna maze](benchmarks/plots/textbook-dyna_maze.png)

`algorithms/dyna_q.py` at its defaults (alpha 0.1, epsilon 0.1, gamma 0.95, the Figure 8.2 maze) with
`--planning-steps` n. Mean steps per episode over the {RUNS} runs; "near-optimal from" is the first
episode after which the mean stays below {NEAR_OPTIMAL} steps (shortest path {SHORTEST_PATH}; epsilon-greedy
exploration adds a few steps). Episode 1 is a random walk (all Q = 0) and is the same for every n
(mean {lengths[0][:, 0].mean():.0f} steps); the book leaves it out of the figure too.

| n | episode 2 | episode 5 | episode 10 | episode 20 | episode 50 | mean of episodes 2–10 | near-optimal from episode | steps to finish 50 episodes: median (min–max) |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Book (Figure 8.2 and its text, 30 runs): the agent without planning (n = 0) takes about 25 episodes to
reach (epsilon-)optimal performance, n = 5 about five episodes and n = 50 only three.
"""
    (ROOT / "benchmarks" / "textbook" / "dyna_maze.md").write_text(fragment)
    print(fragment)


if __name__ == "__main__":
    main()
