"""The --cuda path of every deep script, in a minute: part of the GPU check (benchmarks/gpu_check.sh).

For each script, a short run as a user would start it (its own defaults, `--cuda` on, a small budget) that
saves its model and writes a checkpoint halfway; then the same run killed after that checkpoint and
resumed from it. One line per script:

- *device*: where the saved weights live (cuda:0 when the script really trained on the GPU; cpu where
  torch sees no GPU, as on the machines without one, where this script rehearses the check);
- *steps/s*: the script's own figure (summary.json), a short run's, start-up included: a smoke figure, not
  the speed table (benchmarks/compare.py makes that one);
- *resumed = whole*: whether the killed-and-resumed run wrote the same episodes and final weights as the run
  never stopped. Bitwise on CPU (the harness tests it); on a GPU, kernels that sum in a varying order (atomics
  in some backward passes) may make the two differ in the last bits and then drift apart: "no" there says so,
  it is not a failure of resume.

    python benchmarks/gpu_smoke.py                       # every script below
    python benchmarks/gpu_smoke.py --scripts sac.py --markdown /tmp/smoke.md
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import tyro

ROOT = Path(__file__).resolve().parent.parent
KILL_WAIT_SECONDS = 300  # how long to wait for the first checkpoint of the run that is then killed
# Each script's smoke run: its defaults, with a budget (and a warm-up) small enough for a minute in all.
SMOKE_ARGS = {
    "dqn.py": ["--total-timesteps", "4000", "--learning-starts", "1000"],
    "reinforce.py": ["--total-timesteps", "8000"],
    "ppo.py": ["--total-timesteps", "4096"],
    "a2c.py": ["--total-timesteps", "4000"],
    "ppo_continuous.py": ["--env-id", "Hopper-v5", "--total-timesteps", "4096", "--num-steps", "1024"],
    "trpo.py": ["--env-id", "Hopper-v5", "--total-timesteps", "4096", "--num-steps", "1024"],
    "sac.py": ["--env-id", "Hopper-v5", "--total-timesteps", "2000", "--learning-starts", "1000"],
    "td3.py": ["--env-id", "Hopper-v5", "--total-timesteps", "2000", "--learning-starts", "1000"],
    "ddpg.py": ["--env-id", "Hopper-v5", "--total-timesteps", "2000", "--learning-starts", "1000"],
}


@dataclass
class Args:
    scripts: list[str] = field(default_factory=lambda: list(SMOKE_ARGS))
    """the scripts to run (from algorithms/)"""
    markdown: Optional[str] = None
    """also write the table to this file"""


def command(script: str, flags: list) -> list:
    return [sys.executable, str(ROOT / "algorithms" / script), *flags]


def script_env() -> dict:
    return dict(os.environ, WANDB_MODE="offline", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))


def run(script: str, flags: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(script, flags), cwd=cwd, env=script_env(), capture_output=True, text=True)


def last_line(result: subprocess.CompletedProcess) -> str:
    """What a failed run said last (its error, for the table's note)."""
    return (result.stderr.strip().splitlines() or ["?"])[-1]


def run_directory(cwd: Path) -> Path:
    (run_dir,) = list((cwd / "runs").iterdir())
    return run_dir


def saved_tensors(run_dir: Path) -> dict:
    """Every tensor of the saved model file, by its path in the saved dictionary, on the device it was saved from."""
    (model_file,) = run_dir.glob("*.pt")
    found = {}

    def walk(value, name):
        if isinstance(value, torch.Tensor):
            found[name] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{name}/{key}")

    walk(torch.load(model_file, weights_only=False), "")
    return found


def smoke(script: str, workdir: Path) -> dict:
    flags = SMOKE_ARGS[script] + ["--seed", "1", "--cuda", "--save-model", "--eval-episodes", "2"]
    flags += ["--checkpoint-every", str(int(flags[flags.index("--total-timesteps") + 1]) // 2)]
    whole_dir, stopped_dir = workdir / "whole", workdir / "stopped"
    whole_dir.mkdir()
    stopped_dir.mkdir()
    start = time.perf_counter()
    whole = run(script, flags, whole_dir)
    seconds = time.perf_counter() - start
    if whole.returncode != 0:
        return {"script": script, "ok": "no", "note": last_line(whole)}
    whole_run = run_directory(whole_dir)
    tensors = saved_tensors(whole_run)
    devices = sorted({str(tensor.device) for tensor in tensors.values()})
    summary = json.loads((whole_run / "summary.json").read_text())

    # the same run, killed once its first checkpoint is on disk, then resumed from it
    process = subprocess.Popen(command(script, flags), cwd=stopped_dir, env=script_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + KILL_WAIT_SECONDS
    while (not list(stopped_dir.glob("runs/*/checkpoints/checkpoint_*.pt")) and process.poll() is None
           and time.time() < deadline):
        time.sleep(0.01)
    process.kill()
    process.wait()
    checkpoints = sorted(stopped_dir.glob("runs/*/checkpoints/checkpoint_*.pt"))
    if not checkpoints:
        return {"script": script, "ok": "no", "note": "no checkpoint was written"}
    resumed = run(script, flags + ["--resume", str(checkpoints[0])], stopped_dir)
    if resumed.returncode != 0:
        return {"script": script, "ok": "no", "note": "resume: " + last_line(resumed)}
    resumed_run = run_directory(stopped_dir)
    with open(whole_run / "episodes.csv") as whole_file, open(resumed_run / "episodes.csv") as resumed_file:
        # the wall-time column differs between any two runs; the rest must not
        same_episodes = ([row[:-1] for row in csv.reader(whole_file)] == [row[:-1] for row in csv.reader(resumed_file)])
    resumed_tensors = saved_tensors(resumed_run)
    same_weights = tensors.keys() == resumed_tensors.keys() and all(
        torch.equal(tensors[name], resumed_tensors[name]) for name in tensors)
    return {"script": script, "ok": "yes", "device": ", ".join(devices), "steps": summary.get("global_step", ""),
            "sps": f"{summary['sps']:,.0f}" if "sps" in summary else "", "seconds": f"{seconds:.1f}",
            "resumed": "yes" if same_episodes and same_weights else
                       f"no (episodes {'same' if same_episodes else 'differ'}, weights {'same' if same_weights else 'differ'})"}


def main(args: Args) -> int:
    if unknown := [script for script in args.scripts if script not in SMOKE_ARGS]:
        print(f"unknown script(s) {', '.join(unknown)}; known: {', '.join(SMOKE_ARGS)}", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (torch sees none)"
    lines = [f"`python benchmarks/gpu_smoke.py` on {gpu}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.", "",
             "| script | ran | weights on | steps | steps/s | seconds | resumed = whole | note |",
             "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    failed = False
    for script in args.scripts:
        with tempfile.TemporaryDirectory() as workdir:
            row = smoke(script, Path(workdir))
        failed |= row["ok"] != "yes"
        line = (f"| {script} | {row['ok']} | {row.get('device', '')} | {row.get('steps', '')} | {row.get('sps', '')} | "
                f"{row.get('seconds', '')} | {row.get('resumed', '')} | {row.get('note', '')} |")
        lines.append(line)
        print(line, flush=True)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
