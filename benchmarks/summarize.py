"""Summarise benchmark runs into markdown table rows.

Each benchmark row runs in its own folder, benchmarks/logs/{row}/, so its seeds' run directories are
benchmarks/logs/{row}/runs/*. For every row this prints: seeds, mean +- std over seeds of the
deterministic evaluation return and of the last-100-training-episode return, SPS, wall time, and,
with --reach ROW=SCORE, the env steps and wall time at which the mean of the last 10 training
episodes first reached SCORE.

    python benchmarks/summarize.py --reach reinforce-CartPole-v1=475
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro


@dataclass
class Args:
    logs: str = "benchmarks/logs"
    """the folder holding one sub-folder per benchmark row"""
    reach: list[str] = field(default_factory=list)
    """ROW=SCORE: also report when the last-10 training mean first reached SCORE"""


def mean_std(values: list, digits: int = 2) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def first_reach(episodes: list, score: float):
    """(global_step, wall_time) where the mean of the last 10 training returns first reaches score."""
    returns = [float(row["episode_return"]) for row in episodes]
    for index in range(10, len(returns) + 1):
        if np.mean(returns[index - 10:index]) >= score:
            return int(episodes[index - 1]["global_step"]), float(episodes[index - 1]["wall_time"])
    return None


def main(args: Args) -> None:
    reach = {row: float(score) for row, score in (item.split("=") for item in args.reach)}
    print("| row | seeds | eval return | last-100 training return | SPS | wall time (s) | reached |")
    print("|---|---|---|---|---|---|---|")
    for row_dir in sorted(Path(args.logs).iterdir()):
        summaries, episodes = [], []
        for run_dir in sorted((row_dir / "runs").glob("*")):
            if (run_dir / "summary.json").exists():
                summaries.append(json.loads((run_dir / "summary.json").read_text()))
                with open(run_dir / "episodes.csv") as file:
                    episodes.append(list(csv.DictReader(file)))
        if not summaries:
            continue
        last_100 = [np.mean([float(row["episode_return"]) for row in runs[-100:]]) for runs in episodes]
        reached = ""
        if row_dir.name in reach:
            hits = [first_reach(runs, reach[row_dir.name]) for runs in episodes]
            steps = [hit[0] for hit in hits if hit]
            times = [hit[1] for hit in hits if hit]
            reached = (f"{len(steps)}/{len(hits)} seeds reach {reach[row_dir.name]:g}: "
                       f"{mean_std(steps, 0)} steps, {mean_std(times, 1)} s" if steps else "never")
        print(f"| {row_dir.name} | {len(summaries)} | {mean_std([s['eval_return_mean'] for s in summaries])} | "
              f"{mean_std(last_100)} | {np.mean([s['sps'] for s in summaries]):,.0f} | "
              f"{np.mean([s['wall_time'] for s in summaries]):.1f} | {reached} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
