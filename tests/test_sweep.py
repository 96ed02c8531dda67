"""benchmarks/sweep.py: the search space on the command line, the objective, pruning, the journal-file
default (resumed), and two worker processes sharing one study on a real PostgreSQL server."""

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import optuna
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("benchmark_sweep", ROOT / "benchmarks" / "sweep.py")
sweep_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep_tool)

TINY = """
script = "q_learning.py"
total_timesteps = 2000
seeds = [1, 2]
max_trials = {max_trials}
pruner = "{pruner}"
n_startup_trials = 2
args = ["--eval-episodes", "5"]
[envs]
"FrozenLake-v1" = [0.0, 1.0]
"CliffWalking-v1" = [-100.0, -13.0]
[space]
learning-rate = {{type = "float", low = 0.01, high = 1.0, log = true}}
gamma = {{type = "categorical", choices = [0.9, 0.99]}}
"""


def write_sweep(folder, max_trials=4, pruner="median", name="tiny"):
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(max_trials=max_trials, pruner=pruner))
    return path


def sweep_command(path, folder, *extra) -> list:
    return [sys.executable, str(ROOT / "benchmarks" / "sweep.py"), "--sweep", str(path), "--logs-dir",
            str(folder / "logs"), "--report-dir", str(folder / "report"), "--plots-dir", str(folder / "plots"), *extra]


def test_parameters_become_the_scripts_flags():
    params = {"learning-rate": 0.001, "double-q": False, "dueling": True, "hidden-sizes": "64 64", "batch-size": 32}
    assert sweep_tool.command_line_args(params) == ["--learning-rate", "0.001", "--no-double-q", "--dueling",
                                                    "--hidden-sizes", "64", "64", "--batch-size", "32"]


def test_the_normalised_score_and_the_order_of_a_trials_runs(tmp_path):
    score = sweep_tool.runner.normalised_score  # benchmarks/run.py's, shared with the families' tables
    assert score(25.0, 25.0, 475.0) == 0.0 and score(475.0, 25.0, 475.0) == 1.0
    sweep = sweep_tool.load_sweep(str(write_sweep(tmp_path)))
    # seed by seed, every env within a seed: pruning sees every env after the first seed
    assert sweep_tool.trial_runs(sweep) == [(1, "FrozenLake-v1"), (1, "CliffWalking-v1"),
                                            (2, "FrozenLake-v1"), (2, "CliffWalking-v1")]


def test_the_sampler_and_pruners_are_set_explicitly(tmp_path):
    sweep = sweep_tool.load_sweep(str(write_sweep(tmp_path, pruner="wilcoxon")))
    sampler = sweep_tool.make_sampler(sweep, seed=3)
    assert sampler._multivariate is True and sampler._constant_liar is True and sampler._n_startup_trials == 2
    assert isinstance(sweep_tool.make_pruner(sweep), optuna.pruners.WilcoxonPruner)
    sweep.pruner = "median"
    assert isinstance(sweep_tool.make_pruner(sweep), optuna.pruners.MedianPruner)
    bad = write_sweep(tmp_path, pruner="hyperband", name="bad")
    with pytest.raises(SystemExit, match="pruner must be one of"):
        sweep_tool.load_sweep(str(bad))


def test_the_objective_is_the_mean_normalised_score_and_a_poor_trial_is_pruned(tmp_path):
    """The objective with a fake executor that writes the summary a run would: scores by hand, and the
    median pruner stops a trial that falls below the others after the first seed."""
    sweep = sweep_tool.load_sweep(str(write_sweep(tmp_path, pruner="median")))
    sweep.n_startup_trials = 1
    returns = {"FrozenLake-v1": 1.0, "CliffWalking-v1": -13.0}  # both at their reference: score 1

    def fake_run(job, seed, root, label):
        run_dir = root / "runs" / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        lr = float(job.args[job.args.index("--learning-rate") + 1])
        value = returns[job.env_id] if lr > 0.1 else {"FrozenLake-v1": 0.0, "CliffWalking-v1": -100.0}[job.env_id]
        (run_dir / "summary.json").write_text(f'{{"eval_return_mean": {value}}}')
        return True, "done"

    study = optuna.create_study(direction="maximize", pruner=sweep_tool.make_pruner(sweep))
    objective = sweep_tool.make_objective(sweep, fake_run, tmp_path / "logs")
    study.enqueue_trial({"learning-rate": 0.5, "gamma": 0.99})
    study.enqueue_trial({"learning-rate": 0.02, "gamma": 0.99})
    study.optimize(objective, n_trials=2)
    good, poor = study.trials
    assert good.value == 1.0 and good.user_attrs["scores"] == [1.0, 1.0, 1.0, 1.0]
    assert poor.state == optuna.trial.TrialState.PRUNED and poor.user_attrs["scores"] == [0.0, 0.0]


def test_the_journal_file_default_is_resumed(tmp_path):
    first = subprocess.run(sweep_command(write_sweep(tmp_path, max_trials=3), tmp_path, "--workers", "2"), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "logs" / "tiny.journal").exists()
    # the same sweep with a higher cap goes on from the journal: trials 3 and 4 only
    second = subprocess.run(sweep_command(write_sweep(tmp_path, max_trials=5), tmp_path), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "3 of 5 trials finished" in second.stdout, second.stdout + second.stderr
    report = (tmp_path / "report" / "tiny.md").read_text()
    assert "(cap 5)" in report and "**Best: trial" in report and "python algorithms/q_learning.py" in report
    # trials 0-4, each complete or pruned (the median pruner may stop the later ones after their first seed;
    # which ones depends on the order the first run's two threads finished in)
    rows = [line.split("|") for line in report.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert sorted(int(row[1]) for row in rows) == [0, 1, 2, 3, 4]
    assert {row[2].strip() for row in rows} <= {"complete", "pruned"}
    assert (tmp_path / "plots" / "sweep-tiny.png").stat().st_size > 10_000
    third = subprocess.run(sweep_command(write_sweep(tmp_path, max_trials=5), tmp_path), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "nothing to run" in third.stdout


# ---------------------------------------------------------------------------------------- PostgreSQL
def postgres_bin() -> str:
    """The folder of initdb and pg_ctl (Debian keeps them off PATH, under /usr/lib/postgresql/N/bin)."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    if found is None:
        if os.environ.get("LUCIDRL_REQUIRE_POSTGRES"):  # .ci/run installs PostgreSQL and sets this
            pytest.fail("PostgreSQL's initdb is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return os.path.dirname(os.path.realpath(found))  # /usr/local/bin/initdb may be a link to it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of the test's own: a fresh cluster on a free port, stopped afterwards. The server
    refuses to run as root, so as root it runs as the postgres user, in a folder that user owns."""
    binaries = postgres_bin()
    folder = tempfile.mkdtemp(prefix="lucidrl-pg-")
    as_user = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), free_port()

    def run(*command):
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    run(f"{binaries}/initdb", "-D", data, "-U", "lucid", "--auth=trust")
    run(f"{binaries}/pg_ctl", "-D", data, "-w", "-l", os.path.join(folder, "server.log"), "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        run(f"{binaries}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "lucid", "sweeps")
        yield f"postgresql://lucid@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, f"{binaries}/pg_ctl", "-D", data, "-w", "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_on_postgresql(tmp_path, postgres_url):
    """Two processes (as on two machines) on one study in PostgreSQL: both run trials, and the study stops
    at the global cap (plus at most the one trial the other worker had running)."""
    path = write_sweep(tmp_path, max_trials=6)
    workers = [subprocess.Popen(sweep_command(path, tmp_path / f"worker{seed}", "--storage", postgres_url,
                                              "--sampler-seed", str(seed)),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for seed in (1, 2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(outputs)
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    finished = [trial for trial in study.trials if trial.state.is_finished()]
    assert 6 <= len(finished) <= 7 and len(finished) == len(study.trials)
    assert len({trial.user_attrs["worker"] for trial in finished}) == 2, "one worker ran every trial"
    assert len({tuple(sorted(trial.params.items())) for trial in finished}) == len(finished)  # no trial twice
    assert all(np.isfinite(trial.value) for trial in finished if trial.value is not None)


@pytest.mark.xdist_group("ray")  # with the runner's Ray tests: one Ray at a time on the machine
def test_a_sweep_on_ray_gives_the_local_backends_trials(tmp_path):
    """The same sampler seed, one trial at a time: the trials' runs as Ray tasks score as the subprocesses do."""
    path = write_sweep(tmp_path, max_trials=3)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for backend in ("local", "ray"):
        extra = ["--backend", "ray", "--ray-cpus", "2"] if backend == "ray" else []
        result = subprocess.run(sweep_command(path, tmp_path / backend, *extra), cwd=ROOT, env=environment,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    studies = [optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / backend / "logs" / "tiny.journal"))))
        for backend in ("local", "ray")]
    local, on_ray = ([(trial.params, trial.value, trial.user_attrs["scores"]) for trial in study.trials]
                     for study in studies)
    assert len(local) == 3 and local == on_ray
