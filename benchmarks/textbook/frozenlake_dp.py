"""Value iteration (Sutton & Barto 2018, Section 4.4) and policy iteration (Section 4.3) on the models of
FrozenLake-v1 (4x4 slippery and deterministic, 8x8 slippery), Taxi-v4 and CliffWalking-v1: sweeps and
iterations to convergence, planning time, max |V_VI - V_PI|, and the evaluation of the greedy policy.
Writes benchmarks/plots/textbook-frozenlake_dp.png (V* and the greedy policy on FrozenLake 4x4 and 8x8)
and benchmarks/textbook/frozenlake_dp.md.

    python benchmarks/textbook/frozenlake_dp.py
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
CASES = [  # env_id, variant, env_kwargs, reference (and where it comes from)
    ("FrozenLake-v1", "4x4 slippery", "{}",
     "0.734 on these seeds (the optimum q_learning.py's benchmark quotes)"),
    ("FrozenLake-v1", "4x4 deterministic", '{"is_slippery": false}', "1.0 (6-step path)"),
    ("FrozenLake-v1", "8x8 slippery", '{"map_name": "8x8"}', "—"),
    ("Taxi-v4", "", "{}", "≈ 7.9 (mean optimal return of Taxi's random starts)"),
    ("CliffWalking-v1", "", "{}", "−13 (optimal path, S&B Example 6.6)"),
]
EVAL_EPISODES = 1000  # the seeded evaluation q_learning.py's FrozenLake benchmark uses
TIMING_REPEATS = 5  # planning time: the median of this many runs
OPTIMAL_TOLERANCE = 1e-6  # an action is optimal when q*(s, a) is this close to v*(s)
ARROWS = "←↓→↑"  # FrozenLake's actions 0-3: left, down, right, up


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "algorithms" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quiet_train(module, **kwargs) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # one summary line per run is noise here
        return module.train(module.Args(**kwargs))


def median_wall_time(module, env_id: str, env_kwargs: str) -> float:
    return float(np.median([quiet_train(module, env_id=env_id, env_kwargs=env_kwargs, eval_episodes=1)["wall_time"]
                            for _ in range(TIMING_REPEATS)]))


def first_optimal_sweep(vi, model, v_star: np.ndarray, gamma: float) -> int:
    """The first sweep of value iteration whose greedy policy is already optimal (its actions are
    greedy in q*), long before V itself converges (the book's point about Figure 4.1)."""
    q_star = vi.expected_update(model, v_star, gamma)
    states, values, sweep = np.arange(len(v_star)), np.zeros(len(v_star)), 0
    while True:
        policy = vi.greedy_policy(model, values, gamma)
        if (q_star[states, policy] >= q_star.max(axis=1) - OPTIMAL_TOLERANCE).all():
            return sweep
        values, sweep = vi.bellman_optimality_backup(model, values, gamma), sweep + 1


def exact_return(vi, model, policy: np.ndarray, initial: np.ndarray, horizon: int) -> float:
    """The policy's expected undiscounted return within the time limit, from the start distribution:
    what the seeded evaluation episodes estimate, computed from the model."""
    states = np.arange(len(policy))
    policy_model = vi.Model(*(array[states, policy] for array in model))
    to_go = np.zeros(len(policy))
    for _ in range(horizon):
        to_go = vi.expected_update(policy_model, to_go, 1.0)
    return float(initial @ to_go)


def draw(axis, values: np.ndarray, policy: np.ndarray, desc: np.ndarray, title: str) -> None:
    size = desc.shape[0]
    image = axis.imshow(values.reshape(size, size), cmap="viridis", vmin=0.0)
    for row in range(size):
        for col in range(size):
            cell, state = desc[row, col].decode(), row * size + col
            label = cell if cell in "HG" else f"S {ARROWS[policy[state]]}" if cell == "S" else ARROWS[policy[state]]
            color = "white" if values[state] < 0.5 * values.max() else "black"
            axis.text(col, row, label, ha="center", va="center", color=color, fontsize=15 if size == 4 else 10,
                      fontweight="bold" if cell in "HGS" else "normal")
    axis.set_xticks([]), axis.set_yticks([])
    axis.set_title(title, fontsize=10)
    plt.colorbar(image, ax=axis, fraction=0.046, pad=0.04)


def main():
    vi, pi = load("value_iteration"), load("policy_iteration")
    os.chdir(tempfile.mkdtemp())  # runs/ lands there, not in the repository
    start = time.time()
    rows, maps, first_sweeps = [], [], {}
    for env_id, variant, env_kwargs, reference in CASES:
        args = vi.Args(env_id=env_id, env_kwargs=env_kwargs)
        env = vi.make_env(args)
        model = vi.tabulate_model(env.unwrapped.P, int(env.observation_space.n), int(env.action_space.n))
        planned = quiet_train(vi, env_id=env_id, env_kwargs=env_kwargs, eval_episodes=EVAL_EPISODES)
        improved = quiet_train(pi, env_id=env_id, env_kwargs=env_kwargs, eval_episodes=EVAL_EPISODES)
        with open(os.path.join(improved["run_dir"], "iterations.csv")) as file:
            sweeps_per_iteration = [int(row["evaluation_sweeps"]) for row in csv.DictReader(file)]
        first_sweeps[env_id] = sweeps_per_iteration[0]
        rows.append({
            "env": env_id, "variant": variant, "states": len(planned["values"]), "sweeps": planned["iterations"],
            "optimal_from": first_optimal_sweep(vi, model, planned["values"], args.gamma),
            "vi_time": median_wall_time(vi, env_id, env_kwargs), "pi_iterations": improved["iterations"],
            "evaluation_sweeps": sum(sweeps_per_iteration), "pi_time": median_wall_time(pi, env_id, env_kwargs),
            "difference": float(np.abs(planned["values"] - improved["values"]).max()),
            "vi_eval": float(np.mean(planned["eval_returns"])), "pi_eval": float(np.mean(improved["eval_returns"])),
            "exact": exact_return(vi, model, planned["policy"], env.unwrapped.initial_state_distrib,
                                  env.spec.max_episode_steps),
            "reference": reference})
        if env_id == "FrozenLake-v1" and variant.endswith("slippery"):
            maps.append((planned["values"], planned["policy"], env.unwrapped.desc, variant))
        env.close()
    elapsed = time.time() - start
    iterations = [row["pi_iterations"] for row in rows]
    small, large = rows[0], rows[2]  # slippery 4x4 and 8x8
    taxi_first, cliff_first = first_sweeps["Taxi-v4"], first_sweeps["CliffWalking-v1"]

    figure, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.6))
    for axis, (values, policy, desc, variant) in zip(axes, maps):
        draw(axis, values, policy, desc, f"FrozenLake-v1 {variant}: V* (γ 0.99) and greedy policy")
    figure.tight_layout()
    plot_path = ROOT / "benchmarks" / "plots" / "textbook-frozenlake_dp.png"
    figure.savefig(plot_path, dpi=110)

    table = ["| env | states | VI sweeps (greedy optimal from sweep) | VI time (ms) | PI iterations "
             "(evaluation sweeps) | PI time (ms) | max \\|V_VI − V_PI\\| | greedy evaluation VI / PI "
             f"({EVAL_EPISODES} episodes) | exact expected return | reference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        name = f"{row['env']} {row['variant']}".strip()
        table.append(f"| {name} | {row['states']} | {row['sweeps']} ({row['optimal_from']}) | "
                     f"{1000 * row['vi_time']:.1f} | {row['pi_iterations']} ({row['evaluation_sweeps']:,}) | "
                     f"{1000 * row['pi_time']:.1f} | "
                     f"{row['difference']:.1e} | {row['vi_eval']:.3f} / {row['pi_eval']:.3f} | {row['exact']:.4f} "
                     f"| {row['reference']} |")
    fragment = f"""### Dynamic programming: value iteration and policy iteration (Sutton & Barto 2018, §4.3–4.4)

`python benchmarks/textbook/frozenlake_dp.py` (each script once per env for the values and the
{EVAL_EPISODES}-episode evaluation, seeds 1 + 100,000 + episode as in q_learning.py; planning time is the
median of {TIMING_REPEATS} runs; {elapsed:.0f} s in all on one core)

![V* and the greedy policy of value iteration on FrozenLake 4x4 and 8x8](benchmarks/plots/textbook-frozenlake_dp.png)

`algorithms/value_iteration.py` and `algorithms/policy_iteration.py` at their defaults (γ 0.99,
θ 1e-10, synchronous sweeps; policy iteration starts from "always action 0" and warm-starts each
evaluation from the last values). "Greedy optimal from sweep" is the first sweep whose greedy
policy takes only optimal actions (q* within {OPTIMAL_TOLERANCE:g} of v*). "Exact expected return" is the
greedy policy's expected undiscounted return within the env's time limit (100 steps on 4x4, 200 on
8x8 and Taxi, 500 on CliffWalking) from its start distribution, computed from the model: the number
the evaluation episodes estimate. On FrozenLake that is the success rate: the values are discounted
and infinite-horizon, and no policy reaches the 4x4 goal every time. In the figure, holes (H) and the
goal (G) are terminal, so V = 0 there: the goal's reward belongs to the transition into it.

{chr(10).join(table)}

Book: policy iteration often converges in very few iterations (§4.3; on Jack's car rental, Figure 4.2,
the fourth improved policy is optimal), and the greedy policy of successive value estimates is
optimal long before they converge (Figure 4.1, for policy evaluation on the 4x4 gridworld). Measured:
{min(iterations)}–{max(iterations)} policy improvements; but every evaluation here runs to θ, so policy iteration
takes more sweeps in all than value iteration (each one cheaper: one action instead of a max over
all), and on Taxi and CliffWalking the first evaluation alone, of the initial policy that never ends
an episode (value −1/(1 − γ) = −100 everywhere), takes {taxi_first:,} sweeps on Taxi and
{cliff_first:,} on CliffWalking. Value iteration's greedy policy is optimal after {small['optimal_from']} of
{small['sweeps']} sweeps on slippery 4x4 and {large['optimal_from']} of {large['sweeps']} on 8x8. On the
deterministic models its values are exact after as many sweeps as the longest optimal path has steps (6 on FrozenLake,
18 on Taxi, 14 on CliffWalking); one more sweep, changing nothing, stops it.
"""
    (ROOT / "benchmarks" / "textbook" / "frozenlake_dp.md").write_text(fragment)
    print(fragment)
    print(f"wrote {plot_path}")


if __name__ == "__main__":
    main()
