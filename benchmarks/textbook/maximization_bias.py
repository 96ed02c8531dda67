"""Figure 6.5 of Sutton & Barto (2018): % of "left" actions from A in Example 6.7, Q-learning vs Double Q-learning.

Double Q-learning runs through algorithms/double_q_learning.py's train() with its defaults (Figure 6.5's
settings); an episode that goes left from A lasts 2 steps, one that goes right 1 step, so episodes.csv
tells the first action. Q-learning has no script that runs this env (q_learning.py ignores the action
mask), so it is the same script's loop with ONE table in both roles of Eq. 6.10, which makes Eq. 6.10
Eq. 6.8. tests/test_double_q_learning.py checks that this update equals q_learning.py's and that the loop
with two tables reproduces train() exactly.

    python benchmarks/textbook/maximization_bias.py      # about 1 minute of CPU time
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

ROOT = Path(__file__).resolve().parent.parent.parent
NAME = "maximization_bias"
RUNS = 2_000  # runs per method (the book averages 10,000; 2,000 take about a minute of CPU time)
EPISODES = 300  # Figure 6.5's x axis
OPTIMAL_LEFT = 0.05  # the optimal policy goes right; epsilon-greedy (0.1) still goes left 0.1 / 2 of the time


def load_module(script: str):
    spec = importlib.util.spec_from_file_location(script[:-3], ROOT / "algorithms" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def double_q_learning_lefts(dq, seed: int) -> np.ndarray:
    """train() itself, with a budget that always finishes EPISODES episodes; True where an episode went left."""
    with contextlib.redirect_stdout(io.StringIO()):
        result = dq.train(dq.Args(seed=seed, total_timesteps=2 * EPISODES, eval_episodes=1))
    with open(os.path.join(result["run_dir"], "episodes.csv")) as file:
        lengths = [int(row["episode_length"]) for row in csv.DictReader(file)][:EPISODES]
    return np.array(lengths) == 2


def q_learning_lefts(dq, seed: int) -> np.ndarray:
    """train()'s loop with Q1 and Q2 one table (so Q-learning, Eq. 6.8); True where an episode went left."""
    args = dq.Args(seed=seed)
    env, rng = dq.make_env(args), np.random.default_rng(seed)
    q_table = np.zeros((env.observation_space.n, env.action_space.n))
    obs, info = env.reset(seed=seed)
    lengths, length = [], 0
    while len(lengths) < EPISODES:
        action = dq.epsilon_greedy(q_table[obs], args.start_e, rng, info["action_mask"])
        next_obs, reward, terminated, truncated, info = env.step(action)
        dq.double_q_learning_update(q_table, q_table, obs, action, reward, next_obs, terminated,
                                    info["action_mask"], args.learning_rate, args.gamma, rng)
        obs, length = next_obs, length + 1
        if terminated or truncated:
            lengths.append(length)
            (obs, info), length = env.reset(), 0
    return np.array(lengths) == 2


def main() -> None:
    dq = load_module("double_q_learning.py")
    args = dq.Args()
    assert args.start_e == args.end_e == 0.1 and args.learning_rate == 0.1 and args.gamma == 1.0
    start, start_cpu = time.time(), time.process_time()
    os.chdir(tempfile.mkdtemp())  # train() writes runs/ here, not in the repository
    curves = {}
    for label, lefts in (("Q-learning", q_learning_lefts), ("Double Q-learning", double_q_learning_lefts)):
        curves[label] = 100 * np.mean([lefts(dq, seed) for seed in range(1, RUNS + 1)], axis=0)  # (EPISODES,)
        print(f"{label}: {RUNS} runs done after {time.time() - start:.0f}s")

    plt.figure(figsize=(7, 4.5))
    episodes = np.arange(1, EPISODES + 1)
    for label, curve in curves.items():
        plt.plot(episodes, curve, label=label)
    plt.axhline(100 * OPTIMAL_LEFT, color="black", linestyle="--", linewidth=1, label="optimal (5%)")
    plt.xlabel("episodes")
    plt.ylabel("% left actions from A")
    plt.ylim(0, 100)
    plt.title(f"Example 6.7 (Figure 6.5), mean over {RUNS:,} runs each")
    plt.legend()
    plt.tight_layout()
    plot = ROOT / "benchmarks" / "plots" / f"textbook-{NAME}.png"
    plt.savefig(plot, dpi=110)

    windows = [(1, 10), (11, 30), (91, 100), (191, 200), (291, 300)]
    header = "| method | " + " | ".join(f"episodes {a}–{b}" for a, b in windows) + " | peak (episode) |"
    rows = [header, "|" + "---|" * (len(windows) + 2)]
    for label, curve in curves.items():
        cells = " | ".join(f"{curve[a - 1:b].mean():.1f}%" for a, b in windows)
        rows.append(f"| {label} | {cells} | {curve.max():.1f}% ({curve.argmax() + 1}) |")
    cpu_minutes = (time.process_time() - start_cpu) / 60  # wall time depends on what else the machine runs
    fragment = f"""### Maximisation bias: Q-learning vs Double Q-learning (Sutton & Barto 2018, Example 6.7, Figure 6.5)

`python benchmarks/textbook/{NAME}.py` ({cpu_minutes:.1f} minutes of CPU time)

![% left actions from A, Q-learning vs Double Q-learning](benchmarks/plots/textbook-{NAME}.png)

% of episodes that take "left" from A, averaged over {RUNS:,} runs per method (seeds 1–{RUNS:,}); epsilon 0.1,
alpha 0.1, gamma 1, 10 actions in B, rewards from B Normal(−0.1, 1), zero initial values, ties broken at random.
Double Q-learning is `algorithms/double_q_learning.py`'s `train()` with its defaults but the budget ({2 * EPISODES} steps,
so that every run finishes {EPISODES} episodes); Q-learning is the same loop with one table in both roles of Eq. 6.10,
which makes it Eq. 6.8 (this script's docstring says why; `tests/test_double_q_learning.py` checks it).

{chr(10).join(rows)}

Book (Figure 6.5, 10,000 runs): Q-learning initially takes left much more often than right and always more often
than the 5% that epsilon-greedy exploration forces on the optimal policy; Double Q-learning is essentially
unaffected by maximisation bias. The optimal line is 5%.
"""
    (ROOT / "benchmarks" / "textbook" / f"{NAME}.md").write_text(fragment)
    print(fragment)


if __name__ == "__main__":
    main()
