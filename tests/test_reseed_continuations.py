"""benchmarks/reseed_continuations.py: the unchanged continuation of a checkpoint replays the original run
(its episodes and greedy evaluation), a reseeded one draws another future; what it cannot continue exactly
is refused in one line."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "benchmarks" / "reseed_continuations.py"
# a tiny run: Pendulum's episodes are 200 steps, learning from step 200, checkpoints at 600 and 1,200
RUN_FLAGS = ["--env-id", "Pendulum-v1", "--seed", "1", "--total-timesteps", "1200", "--learning-starts", "200",
             "--checkpoint-every", "600", "--batch-size", "32", "--hidden-sizes", "16", "16", "--eval-episodes", "2"]


def table(stdout: str) -> dict:
    """continuation -> its row's cells after the name."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows[1:]}


def test_the_control_replays_the_run_and_a_reseeded_continuation_does_not(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "algorithms" / "sac.py"), *RUN_FLAGS], cwd=tmp_path, check=True,
                   capture_output=True)
    run_dir = next((tmp_path / "runs").iterdir())
    checkpoint = sorted((run_dir / "checkpoints").glob("checkpoint_*.pt"))[0]
    assert checkpoint.name == "checkpoint_000000000600.pt"
    with open(run_dir / "episodes.csv", newline="") as file:
        original = [float(row["episode_return"]) for row in csv.DictReader(file)
                    if 600 < int(row["global_step"]) <= 1200]
    assert len(original) == 3

    result = subprocess.run([sys.executable, str(TOOL), str(checkpoint), "--until", "1200", "--seeds", "7"],
                            cwd=tmp_path, check=True, capture_output=True, text=True)
    rows = table(result.stdout)
    assert rows.keys() == {"control", "seed 7"}
    evaluation = json.loads((run_dir / "summary.json").read_text())["eval_return_mean"]
    assert rows["control"][:2] == ["3", f"{np.mean(original):.1f}"] and rows["control"][4] == f"{evaluation:.1f}"
    assert rows["seed 7"][0] == "3" and rows["seed 7"][1] != rows["control"][1]
    assert checkpoint.exists(), "the tool must not touch the checkpoint"


def test_the_streams_it_reseeds_are_every_off_policy_scripts_draws_after_the_warm_up():
    """The tool replaces two saved streams by name: each script it accepts must save them under those names."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profiling import load
    from reseed_continuations import SCRIPTS
    for script in SCRIPTS:
        module = load(script)
        envs = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")])
        states = module.random_states(envs, torch.Generator())
        assert {"sample_generator", "torch"} <= states.keys(), script
        envs.close()


def test_what_cannot_be_continued_is_refused_in_one_line(tmp_path):
    checkpoint = tmp_path / "ddpg_checkpoint.pt"  # what the tool reads before it runs anything
    torch.save({"script": "ddpg.py", "global_step": 600, "args": {"total_timesteps": 1200}}, checkpoint)
    other_script = tmp_path / "ppo_checkpoint.pt"
    torch.save({"script": "ppo.py", "global_step": 600, "args": {"total_timesteps": 1200}}, other_script)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    for path, flags, message in (
            (checkpoint, ["--until", "600"], "--until must be after the checkpoint's step 600"),
            (checkpoint, ["--until", "5000"], "and at most its run's 1,200"),
            (checkpoint, ["--until", "900", "--script", str(tmp_path / "missing.py")], "is not a file"),
            (checkpoint, ["--until", "900", "--seeds", "--no-control"], "nothing to run"),
            (other_script, ["--until", "900"], "a checkpoint of ppo.py"),
            (garbage, ["--until", "900"], "is not a readable checkpoint")):
        result = subprocess.run([sys.executable, str(TOOL), str(path), *flags], cwd=tmp_path, capture_output=True,
                                text=True)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1, \
            (flags, result.stderr)
