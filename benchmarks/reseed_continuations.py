"""Is an event in a run (a collapse, a sudden jump) what the algorithm does from that point, or what one
draw of its random numbers did? Continue a checkpoint several times up to a given step: once as it is (the
control, which replays the original run exactly: resume is bitwise) and once per seed with its random
streams reseeded (the same networks, optimizers, replay buffer and environments; another draw of the
future), and compare the episodes.

    python benchmarks/reseed_continuations.py ~/lucidrl-diag/sac_hopper_s1_830k.pt --until 845000 \\
        --seeds 101 102 103
    python benchmarks/reseed_continuations.py CHECKPOINT --until 845000 --seeds 101 102 103 \\
        --script /tmp/sac_variant.py     # an A/B: a modified copy of the script continues the same state

For the off-policy scripts (sac.py, td3.py, ddpg.py). What is reseeded: the replay sampler's generator and
torch's global generator, which after the warm-up are the only streams these scripts draw from (the
batches, and SAC's policy noise or TD3's and DDPG's exploration and target-smoothing noise); the
environments' generators are left as they are. Each continuation runs the checkpoint's own arguments
with --total-timesteps set to --until, so it ends there with the script's greedy evaluation; that is the
same run as the original up to --until because these scripts read the budget only to stop and to size
the replay buffer (min(--buffer-size, budget + num_envs) rows), and a run never writes more rows than its
steps, so the smaller buffer of the shorter run is never full where the original's was not.
Continuations run --workers at a time, each on one thread, in a temporary folder (--workdir keeps them;
the checkpoint itself is not touched). Output: a markdown table on stdout, one row per continuation, of
the episodes that ended after the checkpoint.
"""

import csv
import json
import os
import pickle
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import tyro

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("sac.py", "td3.py", "ddpg.py")  # the scripts whose random streams after the warm-up are these two


@dataclass
class Args:
    checkpoint: tyro.conf.Positional[str]
    """a checkpoint written by --checkpoint-every of sac.py, td3.py or ddpg.py"""
    until: int
    """continue each copy up to this environment step"""
    seeds: List[int] = field(default_factory=lambda: [101, 102, 103])
    """one reseeded continuation per seed (besides the unchanged control)"""
    script: Optional[str] = None
    """the file that continues the runs (default: algorithms/ + the checkpoint's script); a modified copy for an A/B"""
    control: bool = True
    """also continue the checkpoint unchanged"""
    workers: int = 2
    """continuations run at once (each on one thread)"""
    extra: str = ""
    """more flags for every continuation, among those a resume may change (e.g. "--tensorboard")"""
    workdir: Optional[str] = None
    """keep the continuations (run folders, logs) here; default: a temporary folder, removed at the end"""


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def reseeded_copy(checkpoint: dict, saved_args: dict, seed: Optional[int], folder: str) -> str:
    """The checkpoint with its run folder moved to `folder`, its arguments `saved_args` (the budget cut to
    --until), and (for a seed) its replay sampler and torch's generator reseeded from `seed` and `seed + 1`;
    the path of the copy."""
    copy = dict(checkpoint, run_dir=os.path.join(folder, "run"), args=saved_args)
    if seed is not None:
        copy["random"] = dict(checkpoint["random"], sample_generator=torch.Generator().manual_seed(seed).get_state(),
                              torch=torch.Generator().manual_seed(seed + 1).get_state())
    os.makedirs(copy["run_dir"], exist_ok=True)
    path = os.path.join(folder, "start.pt")
    torch.save(copy, path)
    return path


def command_line(saved: dict) -> list:
    """The flags that give a script back the arguments `saved` in its checkpoint (None: the default)."""
    flags = []
    for name, value in saved.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def continue_run(script: str, saved_args: dict, copy_path: str, folder: str, extra: list) -> float:
    """Resume `copy_path` (made with `saved_args`) with `script` on one thread (its own process, as a run is
    resumed: the envs it pickled name the script's classes), output in folder/log.txt; the mean greedy
    evaluation return."""
    saved = dict(saved_args, resume=copy_path, checkpoint_dir=os.path.join(folder, "checkpoints"))
    log_path = os.path.join(folder, "log.txt")
    with open(log_path, "w") as log:
        finished = subprocess.run([sys.executable, script, *command_line(saved), *extra], cwd=folder, stdout=log,
                                  stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if finished.returncode != 0:
        with open(log_path) as log:
            last_line = (log.read().strip().splitlines() or ["(no output)"])[-1]
        fail(f"the continuation in {folder} stopped with exit {finished.returncode}: {last_line}")
    with open(os.path.join(folder, "run", "summary.json")) as file:
        return json.load(file)["eval_return_mean"]


def episodes_after(run_dir: str, step: int) -> np.ndarray:
    """(global_step, return, length) of every episode that ended after `step`."""
    with open(os.path.join(run_dir, "episodes.csv"), newline="") as file:
        rows = [(int(row["global_step"]), float(row["episode_return"]), int(row["episode_length"]))
                for row in csv.DictReader(file)]
    return np.array([row for row in rows if row[0] > step]).reshape(-1, 3)


def check(args: Args, checkpoint: dict) -> str:
    """The script that continues the runs; refuses (exit 2, one line) what the tool cannot continue."""
    if checkpoint.get("script") not in SCRIPTS:
        fail(f"{args.checkpoint}: a checkpoint of {checkpoint.get('script')}; this tool continues {', '.join(SCRIPTS)}")
    script = args.script or str(ROOT / "algorithms" / checkpoint["script"])
    if not os.path.isfile(script):
        fail(f"--script {script} is not a file")
    step, saved = checkpoint["global_step"], checkpoint["args"]
    if not step < args.until <= saved["total_timesteps"]:
        fail(f"--until must be after the checkpoint's step {step:,} and at most its run's "
             f"{saved['total_timesteps']:,}; got {args.until:,}")
    if not args.seeds and not args.control:
        fail("nothing to run: give --seeds or keep --control")
    return script


def main(args: Args) -> None:
    try:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        fail(f"{args.checkpoint} is not a readable checkpoint: {str(error).splitlines()[0]}")
    script = check(args, checkpoint)
    step, saved_args = checkpoint["global_step"], dict(checkpoint["args"], total_timesteps=args.until)
    names = (["control"] if args.control else []) + [f"seed {seed}" for seed in args.seeds]
    seeds = ([None] if args.control else []) + list(args.seeds)
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or temporary
        folders = [os.path.join(workdir, name.replace(" ", "")) for name in names]
        copies = [reseeded_copy(checkpoint, saved_args, seed, folder) for seed, folder in zip(seeds, folders)]
        del checkpoint  # a 1M-step checkpoint's buffer is ~100 MB: not kept while the continuations run
        with ThreadPoolExecutor(args.workers) as pool:
            evaluations = list(pool.map(lambda job: continue_run(script, saved_args, *job, args.extra.split()),
                                        zip(copies, folders)))
        print(f"{os.path.basename(script)} continued from {args.checkpoint} (step {step:,}) to {args.until:,}\n")
        print("| continuation | episodes | mean return | shortest episode (steps) | last 10 | greedy evaluation |")
        print("|---|---|---|---|---|---|")
        for name, folder, evaluation in zip(names, folders, evaluations):
            done = episodes_after(os.path.join(folder, "run"), step)
            if len(done) == 0:
                print(f"| {name} | 0 | – | – | – | {evaluation:.1f} |")
                continue
            print(f"| {name} | {len(done)} | {done[:, 1].mean():.1f} | {int(done[:, 2].min())} | "
                  f"{done[-10:, 1].mean():.1f} | {evaluation:.1f} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
