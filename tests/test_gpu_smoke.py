"""benchmarks/gpu_smoke.py, rehearsed on the CPU (CI has no GPU): one script's run, its saved weights' device and
the killed-and-resumed run it compares; and the set-up scripts of the GPU check name what exists."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "benchmarks" / "gpu_smoke.py")
gpu_smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_smoke)


def test_a_script_runs_saves_its_weights_and_resumes_as_if_never_stopped(tmp_path):
    row = gpu_smoke.smoke("dqn.py", tmp_path)
    assert row["ok"] == "yes", row
    assert row["device"] == "cpu"  # no GPU here: --cuda falls back to the CPU, and the table says where it ran
    assert row["steps"] == 4000 and row["resumed"] == "yes"


def test_a_resumed_run_that_differs_is_reported(tmp_path, monkeypatch):
    # one return in the resumed run's episodes.csv changed after it ran: the table must say "no"
    real_run = gpu_smoke.run

    def run(script, flags, cwd):
        result = real_run(script, flags, cwd)
        if "--resume" in flags:
            episodes = gpu_smoke.run_directory(cwd) / "episodes.csv"
            lines = episodes.read_text().splitlines()
            step, episode_return, *rest = lines[-1].split(",")
            lines[-1] = ",".join([step, str(float(episode_return) + 1), *rest])
            episodes.write_text("\n".join(lines) + "\n")
        return result

    monkeypatch.setattr(gpu_smoke, "run", run)
    row = gpu_smoke.smoke("dqn.py", tmp_path)
    assert row["ok"] == "yes" and row["resumed"] == "no (episodes differ, weights same)", row


def test_unknown_scripts_are_refused():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--scripts", "nope.py"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown script(s) nope.py" in result.stderr


def test_every_smoke_script_exists_and_the_check_names_known_pairs():
    for script in gpu_smoke.SMOKE_ARGS:
        assert (ROOT / "algorithms" / script).exists()
    check = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    default_pairs = re.search(r'pairs="\$\{PAIRS:-([^}]*)\}"', check).group(1).split()
    assert default_pairs and set(default_pairs) <= {pair.name for pair in compare.PAIRS}
    prepare = (ROOT / "benchmarks" / "gpu_prepare.sh").read_text()
    for file in re.findall(r"[\w]+\.py", prepare.split("for file in", 1)[1].split("done", 1)[0]):
        assert any(pair.peer == "cleanrl" and pair.peer_target == file for pair in compare.PAIRS), file
