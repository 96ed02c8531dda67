"""dqn.py's variants (plain, --n-step 3, --prioritized, both) side by side on one machine: each (variant, seed)
trains once with its model saved, then that final model plays 100 greedy episodes.

The suite's rows evaluate each run over 10 greedy episodes whose start states overlap from one seed to the
next (seed + 100,000 + k); on Acrobot that sample is too thin to rank variants whose policies differ by a few
steps, and an occasional final network that loops in some starts (greedy only: its training episodes, with
ε = 0.05, are fine) moves a 3-seed mean by 10. Here every model gets 100 episodes on starts no other
model sees (1000·seed + 100,000 + k).

    python benchmarks/dqn_variants_eval.py --env-id Acrobot-v1 --seeds 1 2 3 4 5 6 --workers 2

Runs go under --work-dir (git-ignored by default); a (variant, seed) whose evaluation exists is not rerun,
so a killed comparison resumes. Prints a markdown table: per seed the 100-episode greedy mean, their mean,
spread and median, how many runs fall under --bad-below, the 10-episode greedy figure of the run itself, and the
mean of the last 100 training episodes.
"""

import csv
import json
import shlex
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"plain": [], "n-step 3": ["--n-step", "3"], "prioritized": ["--prioritized"],
            "prioritized + n-step 3": ["--prioritized", "--n-step", "3"]}


@dataclass
class Args:
    env_id: str = "Acrobot-v1"
    total_timesteps: int = 500_000
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """any of: plain, 'n-step 3', prioritized, 'prioritized + n-step 3' (quoted on a command line)"""
    dqn_args: str = ""
    """more dqn.py arguments for every training run, e.g. --dqn-args='--huber --max-grad-norm 10'"""
    eval_episodes: int = 100
    workers: int = 1
    """runs at once (learning does not depend on load; dqn.py uses one torch thread)"""
    work_dir: str = "benchmarks/logs/dqn_variants"
    bad_below: float = -100.0
    """a run whose greedy mean is below this counts as a failed final policy"""


def run_dir(work_dir: Path, prefix: str) -> Path:
    """The one run directory dqn.py made for this exp name (runs/{env}__{exp_name}__{seed}__{time})."""
    matches = sorted(work_dir.glob(f"runs/*__{prefix}__*"))
    if len(matches) != 1:
        raise SystemExit(f"expected one run directory for {prefix} in {work_dir}/runs, found {len(matches)}")
    return matches[0]


def tag_of(variant: str, seed: int) -> str:
    return f"{variant.replace(' + ', '-').replace(' ', '-')}-s{seed}"  # "prioritized-n-step-3-s2"


def train_and_evaluate(args: Args, work_dir: Path, variant: str, seed: int) -> None:
    tag = tag_of(variant, seed)
    if list(work_dir.glob(f"runs/*__eval-{tag}__*/summary.json")):
        return  # done in an earlier invocation
    for stale in [*work_dir.glob(f"runs/*__{tag}__*"), *work_dir.glob(f"runs/*__eval-{tag}__*")]:
        shutil.rmtree(stale)  # a run killed before its evaluation ended starts over
    (work_dir / "logs").mkdir(exist_ok=True)
    log_path = work_dir / "logs" / f"{tag}.log"  # both commands' output, to read when one fails
    with open(log_path, "w") as log:
        def dqn(*flags: str) -> None:
            command = [sys.executable, str(ROOT / "algorithms" / "dqn.py"), "--env-id", args.env_id, *flags]
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            if subprocess.run(command, cwd=work_dir, stdout=log, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"{variant} seed {seed} failed: see {log_path}")

        dqn("--total-timesteps", str(args.total_timesteps), *VARIANTS[variant], *shlex.split(args.dqn_args),
            "--seed", str(seed), "--save-model", "--exp-name", tag)
        dqn("--total-timesteps", "0", "--model-path", str(run_dir(work_dir, tag) / f"{tag}.pt"),
            "--seed", str(1000 * seed), "--eval-episodes", str(args.eval_episodes), "--exp-name", f"eval-{tag}")
    print(f"{variant} seed {seed}: done", flush=True)


def table(args: Args, work_dir: Path) -> str:
    lines = [f"| variant | greedy over {args.eval_episodes} episodes, seeds {', '.join(map(str, args.seeds))} | mean ± std "
             f"| median | runs under {args.bad_below:g} | greedy, the run's 10 episodes | last 100 training episodes |",
             "|---|---|---|---|---|---|---|"]
    for variant in args.variants:
        greedy, own, last100 = [], [], []
        for seed in args.seeds:
            tag = tag_of(variant, seed)
            greedy.append(json.loads((run_dir(work_dir, f"eval-{tag}") / "summary.json").read_text())["eval_return_mean"])
            training = run_dir(work_dir, tag)
            own.append(json.loads((training / "summary.json").read_text())["eval_return_mean"])
            with open(training / "episodes.csv") as file:
                returns = [float(row["episode_return"]) for row in csv.DictReader(file)]
            last100.append(statistics.mean(returns[-100:]))
        lines.append(f"| {variant} | {', '.join(f'{value:.1f}' for value in greedy)} | {statistics.mean(greedy):.1f} ± "
                     f"{statistics.pstdev(greedy):.1f} | {statistics.median(greedy):.1f} | {sum(value < args.bad_below for value in greedy)} of {len(greedy)} | "
                     f"{statistics.mean(own):.1f} | {statistics.mean(last100):.1f} ± {statistics.pstdev(last100):.1f} |")
    return "\n".join(lines)


def main(args: Args) -> None:
    if unknown := [variant for variant in args.variants if variant not in VARIANTS]:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    work_dir = (ROOT / args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for future in [pool.submit(train_and_evaluate, args, work_dir, variant, seed) for variant, seed in jobs]:
            future.result()
    print(f"dqn.py on {args.env_id}, {args.total_timesteps:,} steps{', ' + args.dqn_args if args.dqn_args else ''}\n")
    print(table(args, work_dir))


if __name__ == "__main__":
    main(tyro.cli(Args))
