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
from pathlib import Path

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
    _, jobs, notes, appendix, _ = runner.load_suite(str(ROOT / "benchmarks" / "suites" / "full.toml"))
    assert {job.script for job in jobs} == ENV_SCRIPTS
    assert set(notes) <= {job.env_id for job in jobs}
    fragments = [ROOT / fragment for section in appendix for fragment in section["fragments"]]
    assert all(path.exists() for path in fragments), [str(path) for path in fragments if not path.exists()]
    included = " ".join(path.read_text() for path in fragments)
    for script in set(SCRIPTS) - ENV_SCRIPTS:
        assert f"algorithms/{script}" in included, f"{script} has no figure in the full suite's appendix"


# ---------------------------------------------------------------------------------------- the quick suite, run once
# Its local run is shared by the end-to-end test and the Ray test (which compares Ray's results with it), so
# both sit in the "ray" xdist group, on one worker; one torch thread a run, as Ray gives its tasks.
QUICK = ROOT / "benchmarks" / "suites" / "quick.toml"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
RAY = ["--backend", "ray", "--ray-cpus", "2"]
on_ray = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def local_quick_run(tmp_path_factory):
    """The quick suite through the local backend, 2 workers, one thread each: (its output folder, the
    process's result, the rows of its results file as written then)."""
    root = tmp_path_factory.mktemp("quick-local")
    result = subprocess.run(runner_command(QUICK, root, "--workers", "2"), cwd=ROOT, env=ONE_THREAD,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result, read_rows(root / "results" / "quick.csv")


@on_ray
def test_quick_suite_end_to_end_then_skips_what_exists(local_quick_run):
    root, _, rows = local_quick_run
    _, jobs, *_ = runner.load_suite(str(QUICK))
    assert {(row["job"], row["seed"]) for row in rows} == {(job.name, str(seed)) for job in jobs for seed in job.seeds}
    for row in rows:
        planning = row["total_timesteps"] == ""  # value/policy iteration take no env steps
        assert (planning or float(row["sps"]) > 0) and row["gymnasium"]
        assert row["command"].startswith(f"python algorithms/{row['script']} --env-id {row['env_id']}")
    page = (root / "benchmarks.md").read_text()
    assert "**Machine:**" in page
    for job in jobs:
        assert f"## {job.env_id}" in page and f"`{runner.shlex.join(job.command('N'))}`" in page
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert len(images) == len({job.env_id for job in jobs})
    for image in images:
        assert (root / image).stat().st_size > 10_000, f"{image} is missing or empty"

    again = run_runner(QUICK, root)
    assert again.returncode == 0 and "0 runs to do" in again.stdout
    assert read_rows(root / "results" / "quick.csv") == rows

    # A runner killed before it wrote the results file: its finished raw runs count as done.
    (root / "results" / "quick.csv").unlink()
    after_kill = run_runner(QUICK, root)
    assert after_kill.returncode == 0 and "0 runs to do" in after_kill.stdout
    assert {(row["job"], row["seed"]) for row in read_rows(root / "results" / "quick.csv")} == \
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


def test_a_restarted_runner_resumes_its_interrupted_runs_before_it_starts_new_ones(tmp_path):
    """The work list puts the (job, seed) runs that have a checkpoint first, each group in suite order;
    an empty checkpoint folder or one without checkpoint files is a run not yet started."""
    first, second = (runner.Job(script="sac.py", env_id=env_id, seeds=[1, 2], checkpoint_every=10)
                     for env_id in ("Hopper-v5", "Walker2d-v5"))
    todo = [(job, seed) for job in (first, second) for seed in job.seeds]

    def checkpoints_of(job, seed):
        return tmp_path / job.name / f"seed{seed}"

    assert runner.interrupted_first(todo, checkpoints_of) == todo  # nothing under way: suite order
    for job, seed in [(second, 2), (first, 2)]:
        checkpoints_of(job, seed).mkdir(parents=True)
        (checkpoints_of(job, seed) / "checkpoint_000000000010.pt").touch()
    checkpoints_of(second, 1).mkdir(parents=True)  # a folder with no checkpoint yet: not under way
    assert runner.interrupted_first(todo, checkpoints_of) == [(first, 2), (second, 2), (first, 1), (second, 1)]
    assert runner.interrupted_first(todo, lambda job, seed: None) == todo  # no checkpoints folder at all


# ---------------------------------------------------------------------------------------- --backend ray
# Each test starts its own Ray (2 CPUs, no dashboard, a small object store); they share one pytest-xdist
# worker, one at a time, so that two Rays do not crowd a 2-core machine.
COMPARED_COLUMNS = ["job", "script", "env_id", "variant", "seed", "total_timesteps", "global_step", "eval_return_mean",
                    "eval_episodes", "last100_return", "reach_step", "command"]  # the rest: speeds, dates, machine


@on_ray
def test_the_quick_suite_on_ray_gives_the_local_backends_results(local_quick_run, tmp_path):
    """Ray gives each task one CPU and OMP_NUM_THREADS=1: the local backend run with one thread gives the
    same figures, bitwise, for every script but Hogwild's (a3c.py declares DETERMINISTIC = False)."""
    local_root, _, local_rows = local_quick_run
    on_ray = subprocess.run(runner_command(QUICK, tmp_path / "ray", *RAY), cwd=ROOT, env=ONE_THREAD,
                            capture_output=True, text=True, timeout=600)
    assert on_ray.returncode == 0 and "Started a local Ray instance" in on_ray.stderr, on_ray.stdout + on_ray.stderr
    ray_rows = read_rows(tmp_path / "ray" / "results" / "quick.csv")
    racing = {script for script in ENV_SCRIPTS if not getattr(load_module(script), "DETERMINISTIC", True)}

    def figures(rows):
        return {row["job"]: [row[column] for column in COMPARED_COLUMNS] for row in rows if row["script"] not in racing}

    assert len(ray_rows) == len(local_rows) == 24 and figures(ray_rows) == figures(local_rows)
    # the raw runs came back from the Ray tasks to the driver's logs folder, as the local backend leaves them
    def files(root, job):
        folder = root / "logs" / "quick" / job / "seed1"
        return sorted(path.name for path in folder.rglob("*") if path.is_file())

    for row in ray_rows:
        ray_files = files(tmp_path / "ray", row["job"])
        assert "summary.json" in ray_files and ray_files == files(local_root, row["job"])
    assert (tmp_path / "ray" / "benchmarks.md").read_text().count("| ") > 100


def script_processes(marker: str) -> dict:
    """{pid: parent pid} of the running processes whose command line contains marker."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if entry.name.isdigit() and marker in command and "pytest" not in command:
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
    return found


@on_ray
def test_on_ray_a_job_whose_worker_dies_is_rerun_and_a_failing_job_is_reported_once(tmp_path):
    suite = tmp_path / "faults.toml"
    suite.write_text("""
seeds = [7317]
[[job]]
script = "q_learning.py"
env_id = "Taxi-v4"
variant = "worker killed"
total_timesteps = 400_000
[[job]]
script = "q_learning.py"
env_id = "FrozenLake-v1"
variant = "bad argument"
total_timesteps = 1000
args = ["--learning-rate", "-1"]
""")
    marker = "Taxi-v4 --total-timesteps 400000 --seed 7317"
    process = subprocess.Popen(runner_command(suite, tmp_path, *RAY, "--max-retries", "1"), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not script_processes(marker) and time.time() < deadline:
        time.sleep(0.05)
    (first_script, worker), = script_processes(marker).items()
    os.kill(worker, signal.SIGKILL)  # the Ray worker running the task dies: the node is lost to this job
    while first_script in script_processes(marker) and time.time() < deadline:
        time.sleep(0.05)
    assert first_script not in script_processes(marker), "the script outlived its Ray worker"
    retried = set()
    while process.poll() is None and time.time() < deadline + 120:
        retried |= set(script_processes(marker)) - {first_script}
        time.sleep(0.05)
    output = process.communicate()[0]
    assert retried, "the job was not rerun after its worker died\n" + output
    assert process.returncode == 1, output  # the bad argument
    assert output.count("exit status 2") == 2  # its progress line and the final list of failures, once each
    assert len(re.findall(r"^failed: ", output, flags=re.M)) == 1
    rows = read_rows(tmp_path / "results" / "faults.csv")
    assert [(row["env_id"], row["seed"]) for row in rows] == [("Taxi-v4", "7317")]
    episodes = (next((tmp_path / "logs" / "faults").glob("*Taxi*/seed7317/runs/*")) / "episodes.csv").read_text()
    assert episodes.count("\n") > 100  # the rerun's whole run, not the killed attempt's part


@on_ray
def test_the_runner_joins_a_ray_cluster_started_as_the_readme_says(tmp_path):
    """A token, `ray start --head` with token authentication on, then the runner with --address and
    RAY_AUTH_MODE=token: the README's recipe, on one machine (the token under a $HOME of the test's own)."""
    ray = str(Path(sys.executable).parent / "ray")
    environment = {**os.environ, "HOME": str(tmp_path / "home"), "RAY_task_oom_retries": "2", "RAY_AUTH_MODE": "token"}
    token = subprocess.run([ray, "get-auth-token", "--generate"], env=environment, capture_output=True, timeout=60)
    assert token.returncode == 0 and (tmp_path / "home" / ".ray" / "auth_token").exists()
    # --block: the head stays in the foreground, and stopping it (its process group) stops its processes
    # only; `ray stop` would stop every Ray on the machine, another test's included.
    head = subprocess.Popen([ray, "start", "--head", "--block", "--port", "0", "--num-cpus", "2",
                             "--include-dashboard", "false", "--object-store-memory", str(100 * 2**20),
                             "--disable-usage-stats"], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        address, printed = None, []
        deadline = time.time() + 120
        while address is None and time.time() < deadline and head.poll() is None:
            printed.append(head.stdout.readline())
            found = re.search(r"ray start --address='([^']+)'", printed[-1])
            address = found and found.group(1)
        assert address, "".join(printed)
        suite = tmp_path / "two.toml"
        suite.write_text('seeds = [1, 2]\n[[job]]\nscript = "q_learning.py"\nenv_id = "FrozenLake-v1"\n'
                         'total_timesteps = 2000\n')
        result = subprocess.run(runner_command(suite, tmp_path, "--backend", "ray", "--address", address), cwd=ROOT,
                                env=environment, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Started a local Ray instance" not in result.stderr  # it joined the cluster
        assert sorted(row["seed"] for row in read_rows(tmp_path / "results" / "two.csv")) == ["1", "2"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


# ---------------------------------------------------------------------------------------- statistics
def test_mean_std_is_the_sample_std_with_the_spread():
    assert runner.mean_std(["1", "2", "3"], spread=True) == "2.00 ± 1.00 [1.00, 3.00]"  # n − 1: std 1, not 0.82
    assert runner.mean_std([5.0]) == "5.00" and runner.mean_std([5.0], spread=True) == "5.00"  # no std of one value
    assert runner.mean_std(["", 0.5, 0.7], spread=True) == "0.600 ± 0.141 [0.500, 0.700]"
    assert runner.mean_std([]) == "—"


def test_interquartile_mean_by_hand_and_as_scipy_trims():
    from scipy import stats

    assert runner.interquartile_mean(np.arange(1, 9)) == 4.5  # 8 runs: 2 cut from each end, mean of 3, 4, 5, 6
    assert runner.interquartile_mean(np.array([-100.0, 0.0, 1.0, 2.0, 1e6])) == 1.0  # 5 runs: 1 cut from each end
    rng = np.random.default_rng(0)
    for size in range(1, 25):
        scores = rng.normal(size=size)
        assert np.isclose(runner.interquartile_mean(scores), stats.trim_mean(scores, 0.25))


def test_normalised_score_and_performance_profile_by_hand():
    assert np.allclose(runner.normalised_score([25.0, 475.0, 250.0], 25.0, 475.0), [0.0, 1.0, 0.5])
    assert np.allclose(runner.normalised_score([-500.0, -100.0], -500.0, -100.0), [0.0, 1.0])
    profile = runner.performance_profile(np.array([0.2, 0.5, 1.0]), np.array([0.0, 0.2, 0.5, 1.0]))
    assert np.allclose(profile, [1.0, 2 / 3, 1 / 3, 0.0])  # strictly above τ


def test_stratified_bootstrap_resamples_seeds_within_each_environment():
    # Two environments whose runs are all 0 and all 1: any resample that keeps 3 runs of each has mean 0.5,
    # while one that mixed the strata would not.
    low, high = runner.stratified_bootstrap([np.zeros(3), np.ones(3)], np.mean)
    assert low == high == 0.5
    # One environment: the interval of the mean of [0, 1, 2] lies within the data and holds the mean
    low, high = runner.stratified_bootstrap([np.array([0.0, 1.0, 2.0])], np.mean)
    assert 0.0 <= low < 1.0 < high <= 2.0
    # seeded: a re-render prints the same interval; another seed another one
    scores = [np.array([0.1, 0.5, 0.9]), np.array([0.3, 0.2, 1.4])]
    assert runner.stratified_bootstrap(scores, runner.interquartile_mean) == \
        runner.stratified_bootstrap(scores, runner.interquartile_mean)
    many = [np.random.default_rng(0).normal(size=30), np.random.default_rng(1).normal(size=30)]
    assert runner.stratified_bootstrap(many, np.mean, seed=1) != runner.stratified_bootstrap(many, np.mean)
    # an array statistic (a profile) gives bounds of its shape
    low, high = runner.stratified_bootstrap(scores, lambda s: runner.performance_profile(s, np.array([0.0, 0.5, 2.0])))
    assert low.shape == high.shape == (3,) and np.all(low <= high) and high[2] == 0.0


def test_a_family_is_rendered_with_its_iqm_and_profile_and_checked_against_the_jobs(tmp_path):
    suite = tmp_path / "families.toml"
    body = """
seeds = [1, 2, 3]
[[job]]
script = "q_learning.py"
env_id = "FrozenLake-v1"
[[job]]
script = "q_learning.py"
env_id = "Taxi-v4"
[[family]]
name = "Tabular"
reference = "a made-up reference"
[family.envs]
"FrozenLake-v1" = [0.0, 1.0]
"Taxi-v4" = [-200.0, 8.0]
[family.methods]
"q_learning.py" = ["q_learning__FrozenLake-v1", "q_learning__Taxi-v4"]
"""
    suite.write_text(body)
    name, jobs, notes, appendix, families = runner.load_suite(str(suite))
    returns = {"q_learning__FrozenLake-v1": [1.0, 0.5, 1.0], "q_learning__Taxi-v4": [8.0, -96.0, 8.0]}
    rows = [{"job": job, "eval_return_mean": value} for job, values in returns.items() for value in values]
    args = runner.Args(suite=str(suite), plots_dir=str(tmp_path / "plots"), markdown=str(tmp_path / "b.md"))
    lines = "\n".join(runner.render_families(args, name, families, rows, tmp_path))
    # normalised: 1, 0.5, 1 and 1, 0.5, 1: IQM of the 6 = mean of the middle 4 = (0.5 + 1 + 1 + 1) / 4
    assert "| q_learning.py | 3 + 3 | 0.88 [" in lines and "| 0.83 | 0.83, 0.83 |" in lines
    assert (tmp_path / "plots" / "families-profile-tabular.png").stat().st_size > 10_000
    suite.write_text(body.replace('["q_learning__FrozenLake-v1", "q_learning__Taxi-v4"]',
                                  '["q_learning__Taxi-v4", "q_learning__FrozenLake-v1"]'))
    with pytest.raises(SystemExit, match="must be jobs of this suite on"):
        runner.load_suite(str(suite))
