"""The climbing game (Claus & Boutilier 1998): how often do independent Q-learners find its optimum?

Two agents pick one of three actions at once and share the payoff
      b0   b1   b2
a0    11  -30    0
a1   -30    7    6
a2     0    0    5
The optimum (a0, b0) = 11 sits next to the two -30 miscoordinations. An independent learner values its
actions against its partner's exploring play, under which a0 looks worst (its average against a uniform
partner is -6.3), so independent learners climb toward a safer joint action instead. This runs
algorithms/iql.py's tabular learner (its defaults: epsilon 1 -> 0.05 over 30% of training, step size 0.1)
on 100 seeds at each of three budgets and counts where the greedy learners end; it writes
benchmarks/textbook/climbing_game.md.

    python benchmarks/textbook/climbing_game.py
"""

import collections
import contextlib
import importlib.util
import io
import os
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SEEDS = range(1, 101)
BUDGETS = (2_000, 20_000, 50_000)  # environment steps (one step = one play of the game, 8 envs at a time)
PAYOFF = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]  # as in the docstring; iql.py's CLIMBING_PAYOFF


def load_iql():
    spec = importlib.util.spec_from_file_location("iql", ROOT / "algorithms" / "iql.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_joint_action(iql, budget: int, seed: int) -> tuple:
    """The greedy joint action of the two Q-tables after training (ties to the lowest action, as argmax)."""
    with contextlib.redirect_stdout(io.StringIO()):
        result = iql.train(iql.Args(env_id="climbing_game", total_timesteps=budget, seed=seed, eval_episodes=1,
                                    save_model=True))
    import torch

    q_tables = torch.load(Path(result["run_dir"]) / "iql.pt")["q_tables"]["q"].numpy()  # (2 agents, 1 obs, 3 actions)
    return tuple(int(action) for action in q_tables[:, 0].argmax(-1))


def render(counts: dict, minutes: float) -> str:
    """The markdown fragment: per budget, how many seeds ended on each greedy joint action."""
    joint_actions = sorted({action for counter in counts.values() for action in counter})
    found, runs = sum(counter[(0, 0)] for counter in counts.values()), len(SEEDS) * len(counts)
    lines = ["### Independent learners: the climbing game (Claus & Boutilier 1998)", "",
             f"`python benchmarks/textbook/climbing_game.py` ({len(SEEDS)} seeds per budget, {minutes:.1f} min, one process).",
             "algorithms/iql.py, tabular, its defaults; the greedy joint action after training, (agent 0, agent 1).", "",
             "| budget (env steps) | " + " | ".join(f"{a} (payoff {PAYOFF[a[0]][a[1]]:g})" for a in joint_actions) +
             " | optimum (0, 0) found |",
             "|---|" + "---|" * (len(joint_actions) + 1)]
    for budget, counter in counts.items():
        lines.append(f"| {budget:,} | " + " | ".join(str(counter[a]) for a in joint_actions) +
                     f" | {counter[(0, 0)]} of {len(SEEDS)} |")
    lines += ["", f"Independent Q-learners found the optimum (0, 0) = 11 in {found} of {runs} runs."]
    if found < runs / 10:
        lines[-1] += (" Each values its actions against its partner's exploring play, where the optimum's neighbours "
                      "cost -30, so both settle where a miscoordination is cheap; finding it needs the joint action in "
                      "view (joint-action learners, a centralised critic as in mappo.py, or optimistic updates).")
    return "\n".join(lines) + "\n"


def main() -> None:
    iql = load_iql()
    start = time.time()
    counts = {}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)  # the runs' directories go here and away
        for budget in BUDGETS:
            counts[budget] = collections.Counter(final_joint_action(iql, budget, seed) for seed in SEEDS)
    text = render(counts, (time.time() - start) / 60)
    (ROOT / "benchmarks" / "textbook" / "climbing_game.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
