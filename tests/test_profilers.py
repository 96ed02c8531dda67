"""benchmarks/profile_off_policy.py: the operator table of --ops comes from the learning phase of a real run
(tiny budget; the speed figures themselves are never asserted)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILER = ROOT / "benchmarks" / "profile_off_policy.py"


def run_profiler(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROFILER), *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})


def test_ops_prints_the_learning_phase_operators_per_update(tmp_path):
    result = run_profiler("--ops", "ddpg.py", "--env-id", "Pendulum-v1", "--total-timesteps", "300",
                          "--learning-starts", "200", "--batch-size", "16", "--hidden-sizes", "32", "32",
                          "--eval-episodes", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("ddpg.py: "))  # "ddpg.py: 99 learning-phase steps in ..."
    assert 90 <= int(summary.split()[1]) <= 100  # the steps after the 200-step warm-up, not the whole run
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("operator (learning phase")) + 1:]
    calls_per_update = {line.split()[0]: float(line.split()[-1]) for line in table if line.startswith("aten::")}
    # a DDPG update with 2-layer networks: the critic's three layers forward on (s, a) and on (s', mu'(s')),
    # the actor's on s' and s: several matrix products per update, not per run
    assert "aten::addmm" in calls_per_update and 6 <= calls_per_update["aten::addmm"] <= 30


def test_an_unknown_script_or_option_is_refused_with_the_usage(tmp_path):
    for arguments in (["dqn.py"], ["--fast", "sac.py"]):
        result = run_profiler(*arguments, cwd=tmp_path)
        assert result.returncode != 0 and "usage: python benchmarks/profile_off_policy.py [--ops]" in result.stderr
