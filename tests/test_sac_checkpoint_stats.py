"""benchmarks/sac_checkpoint_stats.py reads a sac.py checkpoint: its temperature, the entropy target of the
env's action space, and the critic's values on the buffer's last transitions; other files are refused."""

import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "benchmarks" / "sac_checkpoint_stats.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from profiling import load  # noqa: E402


def test_a_checkpoint_is_read_as_the_run_left_it(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "algorithms" / "sac.py"), "--env-id", "Pendulum-v1", "--seed", "1",
                    "--total-timesteps", "600", "--learning-starts", "100", "--checkpoint-every", "300",
                    "--batch-size", "32", "--hidden-sizes", "16", "16", "--eval-episodes", "1"],
                   cwd=tmp_path, check=True, capture_output=True)
    path = next(tmp_path.glob("runs/*/checkpoints/checkpoint_000000000300.pt"))
    result = subprocess.run([sys.executable, str(TOOL), str(path), "--states", "50"], capture_output=True, text=True,
                            check=True)
    lines = [line.strip("|").split("|") for line in result.stdout.splitlines() if not line.startswith("|---")]
    header, rows = [cell.strip() for cell in lines[0]], [[cell.strip() for cell in line] for line in lines[1:]]
    assert [row[:2] for row in rows] == [["300", "last 50"], ["300", "50 drawn"]]
    last = dict(zip(header, rows[0]))

    checkpoint = torch.load(path, weights_only=False)
    assert last["alpha"] == f"{checkpoint['log_alpha'].exp().item():.3f}"
    assert last["target"] == "-1"  # -dim(A) for Pendulum's one torque
    critic = load("sac.py").SoftQNetwork(3, 1, (16, 16))
    critic.load_state_dict(checkpoint["learner"]["qf1"])
    buffer = checkpoint["replay_buffer"]
    assert buffer["pos"] == buffer["size"] == 300
    with torch.no_grad():
        expected = critic(buffer["obs"][250:300], buffer["actions"][250:300]).mean().item()
    assert math.isclose(float(last["Q1(s, a buffer)"]), expected, abs_tol=0.051)
    for bound in ("u beyond ±3", "u beyond ±5", "u beyond ±7"):
        assert 0.0 <= float(last[bound].rstrip("%")) <= 100.0


def test_other_files_are_refused_in_one_line(tmp_path):
    other = tmp_path / "td3.pt"
    torch.save({"script": "td3.py"}, other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    for path, message in ((other, "a checkpoint of td3.py, not of sac.py"), (garbage, "is not a readable checkpoint")):
        result = subprocess.run([sys.executable, str(TOOL), str(path)], capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
