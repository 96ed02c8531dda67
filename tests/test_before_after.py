"""benchmarks/before_after.py: a script compared with an identical copy of itself is the same run, bit for
bit; a copy with one changed default is caught; the plot is written."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compare_with(before_file: Path, tmp_path: Path) -> str:
    command = [sys.executable, str(ROOT / "benchmarks" / "before_after.py"), "--script", "a2c.py", "--before-file",
               str(before_file), "--total-timesteps", "400", "--seeds", "1", "--workers", "1",
               "--extra=--eval-episodes 1", "--plots-dir", str(tmp_path / "plots")]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True).stdout


def test_an_unchanged_script_is_bitwise_the_same_run_and_a_changed_one_is_not(tmp_path):
    source = (ROOT / "algorithms" / "a2c.py").read_text()
    same = tmp_path / "same.py"
    same.write_text(source)
    assert "| 1 | yes |" in compare_with(same, tmp_path)
    changed = tmp_path / "changed.py"
    assert "learning_rate: float = 7e-4" in source
    changed.write_text(source.replace("learning_rate: float = 7e-4", "learning_rate: float = 1e-3"))
    assert "| 1 | no |" in compare_with(changed, tmp_path)
    assert (tmp_path / "plots" / "before-after-a2c-CartPole-v1.png").stat().st_size > 0
