"""benchmarks/run.py: the quick suite end to end, skipping finished jobs, surviving failed and
killed jobs, and the statistics it reports."""

import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest

from conftest import ROOT, SCRIPTS, load_module

spec = importlib.util.spec_from_file_location("benchmark_runner", ROOT / "benchmarks" / "run.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)


def runner_command(suite, tmp_path, *extra) -> list:
    """The runner's command line with every output under tmp_path."""
    return [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--suite", str(suite),
            "--logs-dir", str(tmp_path / "logs"), "--results-dir", str(tmp_path / "results"),
            "--plots-dir", str(tmp_path / "plots"), "--markdown", str(tmp_path / "benchmarks.md"), *extra]


def run_runner(suite, tmp_path, *extra):
    return subprocess.run(runner_command(suite, tmp_path, *extra), cwd=ROOT, capture_output=True, text=True, timeout=600)


def read_rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


# The runner runs scripts on environments; a script without one (bandits.py: its testbed is built in)
# shows its figures in the full suite's appendix instead.
ENV_SCRIPTS = {script for script in SCRIPTS if "env_id" in load_module(script).Args.__dataclass_fields__}


def test_quick_suite_covers_every_script():
    with open(ROOT / "benchmarks" / "suites" / "quick.toml", "rb") as file:
        scripts = {job["script"] for job in tomllib.load(file)["job"]}
    assert scripts == ENV_SCRIPTS, "add every script in algorithms/ to benchmarks/suites/quick.toml"


def test_full_suite_is_valid_and_covers_every_script():
    _, jobs, notes, appendix = runner.load_suite(str(ROOT / "benchmarks" / "suites" / "full.toml"))
    assert {job.script for job in jobs} == ENV_SCRIPTS
    assert set(notes) <= {job.env_id for job in jobs}
    fragments = [ROOT / fragment for section in appendix for fragment in section["fragments"]]
    assert all(path.exists() for path in fragments), [str(path) for path in fragments if not path.exists()]
    included = " ".join(path.read_text() for path in fragments)
    for script in set(SCRIPTS) - ENV_SCRIPTS:
        assert f"algorithms/{script}" in included, f"{script} has no figure in the full suite's appendix"


def test_quick_suite_end_to_end_then_skips_what_exists(tmp_path):
    suite = ROOT / "benchmarks" / "suites" / "quick.toml"
    result = run_runner(suite, tmp_path, "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    _, jobs, _, _ = runner.load_suite(str(suite))
    rows = read_rows(tmp_path / "results" / "quick.csv")
    assert {(row["job"], row["seed"]) for row in rows} == {(job.name, str(seed)) for job in jobs for seed in job.seeds}
    for row in rows:
        planning = row["total_timesteps"] == ""  # value/policy iteration take no env steps
        assert (planning or float(row["sps"]) > 0) and row["gymnasium"]
        assert row["command"].startswith(f"python algorithms/{row['script']} --env-id {row['env_id']}")
    page = (tmp_path / "benchmarks.md").read_text()
    assert "**Machine:**" in page
    for job in jobs:
        assert f"## {job.env_id}" in page and f"`{runner.shlex.join(job.command('N'))}`" in page
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert len(images) == len({job.env_id for job in jobs})
    for image in images:
        assert (tmp_path / image).stat().st_size > 10_000, f"{image} is missing or empty"

    again = run_runner(suite, tmp_path)
    assert again.returncode == 0 and "0 runs to do" in again.stdout
    assert read_rows(tmp_path / "results" / "quick.csv") == rows

    # A runner killed before it wrote the results file: its finished raw runs count as done.
    (tmp_path / "results" / "quick.csv").unlink()
    after_kill = run_runner(suite, tmp_path)
    assert after_kill.returncode == 0 and "0 runs to do" in after_kill.stdout
    assert {(row["job"], row["seed"]) for row in read_rows(tmp_path / "results" / "quick.csv")} == \
        {(row["job"], row["seed"]) for row in rows}


def test_a_failed_and_a_killed_job_are_reported_and_the_rest_go_on(tmp_path):
    suite = tmp_path / "mixed.toml"
    suite.write_text("""
seeds = [1]
[[job]]
script = "q_learning.py"
env_id = "FrozenLake-v1"
variant = "bad argument"
total_timesteps = 1000
args = ["--learning-rate", "-1"]
[[job]]
script = "q_learning.py"
env_id = "Taxi-v4"
variant = "killed"
total_timesteps = 100_000_000
timeout_seconds = 3
[[job]]
script = "q_learning.py"
env_id = "CliffWalking-v1"
total_timesteps = 2000
""")
    result = run_runner(suite, tmp_path)
    assert result.returncode == 1
    assert "exit status 2" in result.stdout and "killed by signal 9" in result.stdout
    rows = read_rows(tmp_path / "results" / "mixed.csv")
    assert [row["env_id"] for row in rows] == ["CliffWalking-v1"]
    assert "| 0/1 |" in (tmp_path / "benchmarks.md").read_text()  # the failed rows show as missing


def test_first_reach_and_learning_curve():
    steps = np.arange(1, 31) * 100.0
    returns = np.array([0.0] * 10 + [10.0] * 20)
    wall = steps / 1000
    # The last-10 mean first reaches 5 when five of the last ten are 10: the 15th episode.
    assert runner.first_reach(steps, returns, wall, 5.0) == (1500, 1.5)
    assert runner.first_reach(steps, returns, wall, 11.0) == ("", "")
    grid, values = runner.learning_curve(steps, returns, 4000)
    assert len(grid) == runner.CURVE_POINTS and grid[0] == steps[9] and grid[-1] == 4000
    assert values[0] == pytest.approx(0.0) and values[-1] == pytest.approx(10.0)


def test_duplicate_job_names_are_refused(tmp_path):
    suite = tmp_path / "dup.toml"
    suite.write_text('[[job]]\nscript = "q_learning.py"\nenv_id = "Taxi-v4"\ntotal_timesteps = 1\n' * 2)
    with pytest.raises(SystemExit, match="distinct"):
        runner.load_suite(str(suite))


def test_a_killed_runner_resumes_its_job_from_the_checkpoint(tmp_path):
    """With --checkpoints-dir, a job that sets checkpoint_every writes checkpoints there; the runner
    killed mid-job (with its script) and run again resumes the job from its latest checkpoint, and the
    run ends as the one never stopped (same episodes, same evaluation)."""
    suite = tmp_path / "long.toml"
    suite.write_text("""
seeds = [1]
[[job]]
script = "sac.py"
env_id = "Pendulum-v1"
total_timesteps = 1000
checkpoint_every = 400
args = ["--learning-starts", "300", "--batch-size", "32", "--hidden-sizes", "32", "32", "--eval-episodes", "2"]
""")
    whole = run_runner(suite, tmp_path / "whole")
    assert whole.returncode == 0, whole.stdout + whole.stderr

    stopped, checkpoints = tmp_path / "stopped", tmp_path / "stopped" / "checkpoints"
    command = runner_command(suite, stopped, "--checkpoints-dir", str(checkpoints))
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: the kill takes the script too
    deadline = time.time() + 300
    while not list(checkpoints.glob("**/checkpoint_*.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(checkpoints.glob("**/checkpoint_*.pt")), "no checkpoint was written"
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stdout + again.stderr

    def outcome(logs):
        run_dir = next(logs.glob("long/*/seed1/runs/*"))
        episodes = [line.split(",")[:3] for line in (run_dir / "episodes.csv").read_text().splitlines()]
        return episodes, json.loads((run_dir / "summary.json").read_text())["eval_returns"]

    assert outcome(stopped / "logs") == outcome(tmp_path / "whole" / "logs")
