"""tests/warm_python.py runs a script as a fresh `python SCRIPT ARGS` would: each check here runs the same
small program both ways and wants the same exit status, output and view of its surroundings."""

import json
import subprocess
import sys

import pytest

import conftest
from conftest import script_env, warm_python

PROGRAMS = {
    "surroundings": """
import json, os, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "tests_on_path": any(p.rstrip("/").endswith("tests")
                  for p in sys.path), "cwd": os.getcwd(), "marker": os.environ.get("WARM_MARKER"),
                  "stdin": sys.stdin.read(), "name": __name__}))
""",
    "exits_3": "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n",
    "exits_with_a_message": "raise SystemExit('one line')\n",
    "raises": "def inner():\n    raise ValueError('boom')\ninner()\n",
    "interrupted": "raise KeyboardInterrupt\n",
    "atexit_and_thread": """
import atexit, threading, time
atexit.register(lambda: print("atexit ran", flush=True))
def late():
    time.sleep(0.3)
    print("thread finished", flush=True)
threading.Thread(target=late).start()
""",
    "pickles_main": """
import pickle
class Thing:
    pass
print(type(pickle.loads(pickle.dumps(Thing()))).__name__)
""",
}


def both_ways(tmp_path, name: str, args=(), env_extra=None):
    script = tmp_path / f"{name}.py"
    script.write_text(PROGRAMS[name])
    env = {**script_env(), **(env_extra or {})}
    fresh = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=120)
    warm = warm_python().run([str(script), *args], tmp_path, env, timeout=120)
    return fresh, warm


@pytest.mark.parametrize("name", ["exits_3", "exits_with_a_message", "atexit_and_thread", "pickles_main"])
def test_the_same_status_and_output_as_a_fresh_interpreter(tmp_path, name):
    fresh, warm = both_ways(tmp_path, name)
    assert (warm.returncode, warm.stdout, warm.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(tmp_path):
    fresh, warm = both_ways(tmp_path, "raises")
    assert warm.returncode == fresh.returncode == 1
    assert warm.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1] == "ValueError: boom"
    assert "in inner" in warm.stderr


def test_an_uncaught_keyboard_interrupt_ends_by_sigint(tmp_path):
    fresh, warm = both_ways(tmp_path, "interrupted")
    assert warm.returncode == fresh.returncode == -2
    assert "KeyboardInterrupt" in warm.stderr


def test_the_script_sees_its_argv_path_cwd_env_and_stdin_as_when_started_fresh(tmp_path):
    fresh, warm = both_ways(tmp_path, "surroundings", ["--flag", "value"], {"WARM_MARKER": "set"})
    seen_fresh, seen_warm = json.loads(fresh.stdout), json.loads(warm.stdout)
    assert seen_warm == seen_fresh
    assert seen_warm["path0"] == str(tmp_path) and not seen_warm["tests_on_path"]
    assert seen_warm["marker"] == "set" and seen_warm["stdin"] == "" and seen_warm["name"] == "__main__"


def test_a_run_past_its_timeout_is_killed_and_the_next_run_goes_on(tmp_path):
    script = tmp_path / "sleeps.py"
    script.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        warm_python().run([str(script)], tmp_path, script_env(), timeout=1)
    fresh, warm = both_ways(tmp_path, "exits_3")
    assert warm.returncode == fresh.returncode == 3


def test_import_time_settings_and_fresh_runs_take_a_new_interpreter(tmp_path, monkeypatch):
    """What torch and OpenMP read when they load cannot change in a fork that has loaded them."""
    calls = []
    monkeypatch.setattr(conftest.subprocess, "run", lambda *args, **kwargs: calls.append(args[0]))
    conftest.run_script("dqn.py", ["--help"], tmp_path, extra_env={"OMP_NUM_THREADS": "1"})
    conftest.run_script("dqn.py", ["--help"], tmp_path, fresh=True)
    assert len(calls) == 2 and all(call[0] == sys.executable for call in calls)
