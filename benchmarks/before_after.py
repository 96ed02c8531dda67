"""Does a change to a script change what it learns? Run the script as it was at a git revision and as it is
now, same arguments and seeds, and compare the runs.

A speed change should leave learning alone. Where it keeps every operation (and so every random draw) the
same, the two runs of a seed are bitwise identical: the report says so per seed (episodes.csv and the
saved weights). Where it changes the random stream (a different sampler), the curves differ seed by seed
and should agree across seeds: the report gives each seed's greedy evaluation and last-100 training return,
and the plot the two mean curves with their min-max bands.

    python benchmarks/before_after.py --script ppo.py --rev 0290708 --env-id CartPole-v1 \\
        --total-timesteps 500000 --seeds 1 2 3
    python benchmarks/before_after.py --script a2c.py --rev 0290708 --total-timesteps 20000 --seeds 1

Runs go two at a time (learning does not depend on machine load); their speed is not measured here (see
benchmarks/compare.py). Output: benchmarks/plots/before-after-{script}-{env}.png and a markdown table
on stdout.
"""

import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import tyro

ROOT = Path(__file__).resolve().parent.parent
CURVE_POINTS = 100  # the mean curve is read at this many evenly spaced steps
SMOOTHING = 10  # each point of a curve: the mean return of the last 10 episodes finished by then


@dataclass
class Args:
    script: str
    """the file under algorithms/"""
    rev: str = ""
    """the git revision of the 'before' version"""
    before_file: str = ""
    """or the 'before' version as a file (instead of --rev)"""
    env_id: str = "CartPole-v1"
    total_timesteps: int = 100_000
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    extra: str = ""
    """further arguments for both versions, one string: --extra="--eval-episodes 1" (with =, as it starts with --)"""
    workers: int = 2
    plots_dir: str = "benchmarks/plots"


def run(python_file: str, args: Args, seed: int, workdir: str, label: str) -> str:
    """One run of one version in workdir; returns its run directory."""
    command = [sys.executable, python_file, "--env-id", args.env_id, "--total-timesteps", str(args.total_timesteps),
               "--seed", str(seed), "--exp-name", f"{label}-{seed}", "--save-model", *args.extra.split()]
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    (run_dir,) = glob.glob(os.path.join(workdir, "runs", f"*__{label}-{seed}__*"))
    return run_dir


def episodes(run_dir: str) -> np.ndarray:
    """(n, 2): global_step, episode_return of every training episode."""
    with open(os.path.join(run_dir, "episodes.csv")) as file:
        return np.array([(float(row["global_step"]), float(row["episode_return"])) for row in csv.DictReader(file)])


def same_weights(before_dir: str, after_dir: str) -> bool:
    before, after = (torch.load(glob.glob(os.path.join(d, "*.pt"))[0], map_location="cpu") for d in (before_dir, after_dir))
    tensors = lambda saved: {f"{name}.{key}": value for name, part in saved.items() if isinstance(part, dict)
                             for key, value in part.items() if torch.is_tensor(value)}
    before, after = tensors(before), tensors(after)
    return before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)


def summary(run_dir: str, run_episodes: np.ndarray) -> tuple:
    """The greedy evaluation and the mean return of the last 100 training episodes."""
    data = json.loads(Path(run_dir, "summary.json").read_text())
    return data["eval_return_mean"], float(np.mean(run_episodes[-100:, 1]))


def main(args: Args) -> None:
    if bool(args.rev) == bool(args.before_file):
        raise SystemExit("give the 'before' version as --rev REV or as --before-file PATH (one of them)")
    with tempfile.TemporaryDirectory() as workdir:
        before_file = os.path.join(workdir, f"before_{args.script}")
        if args.before_file:
            Path(before_file).write_text(Path(args.before_file).read_text())
        else:
            Path(before_file).write_text(subprocess.run(["git", "show", f"{args.rev}:algorithms/{args.script}"],
                                                        cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        before_name = args.rev or os.path.basename(args.before_file)
        after_file = str(ROOT / "algorithms" / args.script)
        jobs = [(label, file, seed) for seed in args.seeds for label, file in (("before", before_file), ("after", after_file))]
        with ThreadPoolExecutor(args.workers) as pool:
            dirs = dict(zip([(label, seed) for label, _, seed in jobs],
                            pool.map(lambda job: run(job[1], args, job[2], workdir, job[0]), jobs)))
        print(f"{args.script} on {args.env_id}, {args.total_timesteps:,} steps: before = {before_name}, after = the work tree\n")
        print("| seed | bitwise identical | greedy evaluation (before → after) | last 100 training (before → after) |")
        print("|---|---|---|---|")
        for seed in args.seeds:
            before, after = dirs[("before", seed)], dirs[("after", seed)]
            before_episodes, after_episodes = episodes(before), episodes(after)
            identical = np.array_equal(before_episodes, after_episodes) and same_weights(before, after)
            (eval_before, last_before), (eval_after, last_after) = (summary(before, before_episodes),
                                                                    summary(after, after_episodes))
            print(f"| {seed} | {'yes' if identical else 'no'} | {eval_before:.1f} → {eval_after:.1f} | "
                  f"{last_before:.1f} → {last_after:.1f} |")

        grid = np.linspace(0, args.total_timesteps, CURVE_POINTS)
        figure, axis = plt.subplots(figsize=(7, 4))
        for label, colour in (("before", "tab:gray"), ("after", "tab:blue")):
            # each seed's return of its latest finished episode at each grid step (NaN before the first)
            curves = []
            for seed in args.seeds:
                data = episodes(dirs[(label, seed)])
                sums = np.concatenate([[0.0], np.cumsum(data[:, 1])])
                ends = np.arange(1, len(data) + 1)
                starts = np.maximum(ends - SMOOTHING, 0)
                smoothed = (sums[ends] - sums[starts]) / (ends - starts)  # mean of the last <= 10 episodes
                index = np.searchsorted(data[:, 0], grid, side="right") - 1
                curves.append(np.where(index >= 0, smoothed[np.maximum(index, 0)], np.nan))
            curves = np.array(curves)
            with warnings.catch_warnings():  # all-NaN columns: the grid's first points, before any episode ended
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, low, high = np.nanmean(curves, axis=0), np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
            axis.plot(grid, mean, color=colour, label=f"{label} ({before_name if label == 'before' else 'now'})")
            axis.fill_between(grid, low, high, color=colour, alpha=0.2)
        axis.set_xlabel("environment steps")
        axis.set_ylabel(f"training return (mean of the last {SMOOTHING} episodes)")
        axis.set_title(f"{args.script} on {args.env_id}: seeds {', '.join(map(str, args.seeds))}, mean and min-max")
        axis.legend()
        os.makedirs(args.plots_dir, exist_ok=True)
        path = os.path.join(args.plots_dir, f"before-after-{args.script[:-3]}-{args.env_id}.png")
        figure.savefig(path, dpi=100, bbox_inches="tight")
        print(f"\nplot: {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
