"""Hyperparameter sweeps: an Optuna study over a script's Args, every trial run through the real script.

    python benchmarks/sweep.py --sweep benchmarks/sweeps/dqn_cartpole.toml              # resumable journal file
    python benchmarks/sweep.py --sweep benchmarks/sweeps/dqn_cartpole.toml --workers 2  # two trials at a time
    python benchmarks/sweep.py --sweep ... --backend ray [--address HEAD_IP:6379]       # trials' runs on Ray
    python benchmarks/sweep.py --sweep ... --storage postgresql://user:password@host/db --sampler-seed 2
    python benchmarks/sweep.py --sweep ... --report-only                               # the report, no trials

A sweep file (benchmarks/sweeps/*.toml) names the script, the environments with the two returns that
normalise their scores ([random, reference]: 0 is the uniform random policy, 1 the reference), the seeds,
the budget, fixed arguments, the trial cap, the pruner and the search space:

    script = "dqn.py"
    total_timesteps = 30_000
    seeds = [1, 2, 3]
    args = ["--eval-episodes", "10"]
    max_trials = 24                  # over every worker of the study
    pruner = "wilcoxon"              # "wilcoxon", "median" or "none"
    n_startup_trials = 8             # random trials before TPE models the results
    [envs]
    "CartPole-v1" = [25.0, 475.0]
    [space]
    learning-rate = {type = "float", low = 1e-4, high = 1e-2, log = true}
    batch-size = {type = "categorical", choices = [32, 64, 128]}
    double-q = {type = "categorical", choices = [true, false]}     # --double-q / --no-double-q
    hidden-sizes = {type = "categorical", choices = ["64 64", "256 256"]}   # several values: one string

The objective of a trial is the mean over its runs (every seed on every environment) of the normalised
deterministic evaluation return at the end of training (summary.json's eval_return_mean). A trial's runs
go one at a time, seed by seed, so a poor trial is pruned after a few of them: the Wilcoxon pruner
(Optuna's, made for a trial evaluated on several instances) compares its run-by-run scores with the best
trial's on the same runs; the median pruner compares its running mean with the median of the other
trials' at the same run. Parallelism comes from trials: --workers trials at a time in this process, and
as many processes (on as many machines) as share the study's storage.

Storage: a journal file by default (benchmarks/logs/sweeps/{name}.journal, git-ignored; a sweep killed
and run again goes on from it, with no server). `--storage postgresql://...` puts the study in a
PostgreSQL database that workers on many machines share (the RL Baselines3 Zoo's pattern): start the
same command on each, with a different --sampler-seed. The study ends at max_trials finished trials
(complete, pruned or failed) counted over all workers; trials already running then finish, so a study
of W workers can end with up to W − 1 more. Optuna 5 changed TPE's defaults (multivariate TPE and the
constant liar on); the sampler's options are all set here, so a study samples the same under Optuna 4.

Output, rewritten after every trial: benchmarks/sweeps/{name}.md (the best Args as a ready command line,
the trials table) and benchmarks/plots/sweep-{name}.png (the optimisation history and the parameters'
importances, PED-ANOVA). The runs stay under benchmarks/logs/sweeps/{name}/trial_NNNN/.
"""

import json
import math
import os
import shlex
import socket
import sys
import threading
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import optuna
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as runner  # noqa: E402  (benchmarks/run.py: the jobs, the subprocess and Ray backends)

ROOT = runner.ROOT
PRUNERS = ("wilcoxon", "median", "none")


@dataclass
class Args:
    sweep: str = "benchmarks/sweeps/dqn_cartpole.toml"
    """the sweep file (TOML)"""
    storage: Optional[str] = None
    """an Optuna storage URL (postgresql://user:password@host/db for workers on many machines); None: the
    journal file benchmarks/logs/sweeps/{name}.journal"""
    workers: int = 1
    """trials run at once by this process"""
    sampler_seed: int = 0
    """the TPE sampler's seed; give each process of a shared study its own"""
    backend: Literal["local", "ray"] = "local"
    """local: a trial's runs are subprocesses here; ray: Ray tasks (see benchmarks/run.py)"""
    address: Optional[str] = None
    """--backend ray: the cluster to use; None: an embedded Ray"""
    ray_cpus: Optional[int] = None
    """--backend ray without --address: CPUs of the embedded Ray (None: every core)"""
    max_retries: int = 2
    """--backend ray: times a run is rerun after its worker or node died"""
    logs_dir: str = "benchmarks/logs/sweeps"
    """where the trials' runs and the default journal go (git-ignored)"""
    report_dir: str = "benchmarks/sweeps"
    """where {name}.md goes"""
    plots_dir: str = "benchmarks/plots"
    """where sweep-{name}.png goes"""
    report_only: bool = False
    """run no trial: write the report of the study as it stands"""


@dataclass
class Sweep:
    path: str
    name: str
    script: str
    envs: dict  # env id -> [random, reference]
    seeds: list
    total_timesteps: int
    space: dict
    args: list
    max_trials: int
    pruner: str = "wilcoxon"
    n_startup_trials: int = 8


class RunFailed(Exception):
    """A run of a trial failed on its own (its script exited non-zero): the trial is marked failed."""


def load_sweep(path: str) -> Sweep:
    with open(path, "rb") as file:
        spec = tomllib.load(file)
    resolved = Path(path).resolve()
    shown = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path  # as the report names it
    sweep = Sweep(path=shown, name=Path(path).stem, script=spec["script"], envs=spec["envs"], seeds=spec["seeds"],
                  total_timesteps=spec["total_timesteps"], space=spec["space"], args=spec.get("args", []),
                  max_trials=spec["max_trials"], pruner=spec.get("pruner", "wilcoxon"),
                  n_startup_trials=spec.get("n_startup_trials", 8))
    if sweep.pruner not in PRUNERS:
        raise SystemExit(f"{path}: pruner must be one of {PRUNERS}; got {sweep.pruner!r}")
    for name, dimension in sweep.space.items():
        if dimension.get("type") not in ("float", "int", "categorical"):
            raise SystemExit(f"{path}: space.{name} needs type float, int or categorical; got {dimension}")
    if not (ROOT / "algorithms" / sweep.script).exists():
        raise SystemExit(f"{path}: no algorithms/{sweep.script}")
    return sweep


# ---------------------------------------------------------------------------------------- A trial
def suggest(trial: optuna.Trial, space: dict) -> dict:
    """The trial's values for the search space, by argument name (as on the command line, without --)."""
    params = {}
    for name, dimension in space.items():
        if dimension["type"] == "float":
            params[name] = trial.suggest_float(name, dimension["low"], dimension["high"], log=dimension.get("log", False))
        elif dimension["type"] == "int":
            params[name] = trial.suggest_int(name, dimension["low"], dimension["high"], log=dimension.get("log", False))
        else:
            params[name] = trial.suggest_categorical(name, dimension["choices"])
    return params


def command_line_args(params: dict) -> list:
    """{"learning-rate": 0.001, "double-q": False, "hidden-sizes": "64 64"} -> ["--learning-rate", "0.001",
    "--no-double-q", "--hidden-sizes", "64", "64"] (tyro's flags: booleans as --x / --no-x)."""
    arguments = []
    for name, value in params.items():
        if isinstance(value, bool):
            arguments.append(f"--{name}" if value else f"--no-{name}")
        else:
            arguments += [f"--{name}", *str(value).split()]
    return arguments


def trial_runs(sweep: Sweep) -> list:
    """(seed, env id) in the order a trial runs them: seed by seed, so pruning sees every env early."""
    return [(seed, env_id) for seed in sweep.seeds for env_id in sweep.envs]


class Executor:
    """Runs one (job, seed) in its folder, here or as a Ray task, and returns (ok, message)."""

    def __init__(self, args: Args):
        self.args = args
        self.remote = None
        if args.backend == "ray":
            self.remote = runner.start_ray(args.address, args.ray_cpus, args.max_retries)

    def __call__(self, job: runner.Job, seed, root: Path, label: str) -> tuple:
        if self.remote is None:
            return runner.run_one(job, seed, root, label)
        return runner.land(runner.submit(self.remote, job, seed, label), root, self.args.max_retries)

    def close(self) -> None:
        if self.remote is not None:
            import ray

            ray.shutdown()


def make_objective(sweep: Sweep, execute: Executor, logs: Path):
    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, sweep.space)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        job_args, runs, scores = [*sweep.args, *command_line_args(params)], trial_runs(sweep), []
        for step, (seed, env_id) in enumerate(runs):
            job = runner.Job(script=sweep.script, env_id=env_id, seeds=sweep.seeds,
                             total_timesteps=sweep.total_timesteps, args=job_args)
            root = logs / f"trial_{trial.number:04d}" / env_id.replace("/", "-") / f"seed{seed}"
            ok, message = execute(job, seed, root, f"trial {trial.number} {env_id} seed {seed}")
            if not ok:
                raise RunFailed(f"trial {trial.number}, {env_id} seed {seed}: {message}")
            summary = json.loads(next(root.glob("runs/*/summary.json")).read_text())
            scores.append(float(runner.normalised_score(summary["eval_return_mean"], *sweep.envs[env_id])))
            trial.set_user_attr("scores", scores)
            # Wilcoxon compares run by run with the best trial; the median pruner compares running means.
            trial.report(scores[-1] if sweep.pruner == "wilcoxon" else float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"after {len(scores)} of {len(runs)} runs")
        return float(np.mean(scores))

    return objective


# ---------------------------------------------------------------------------------------- The study
def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    if sweep.pruner == "wilcoxon":
        # n_startup_steps: a trial runs at least one seed on every env before it can be pruned. Optuna still
        # labels this pruner experimental (since 3.6); its warning says nothing a sweep can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=len(sweep.envs))
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=sweep.n_startup_trials, n_warmup_steps=len(sweep.envs) - 1)
    return optuna.pruners.NopPruner()


def make_sampler(sweep: Sweep, seed: int) -> optuna.samplers.TPESampler:
    """TPE with every option set (Optuna 5 changed the defaults: multivariate and the constant liar on)."""
    return optuna.samplers.TPESampler(n_startup_trials=sweep.n_startup_trials, n_ei_candidates=24, seed=seed,
                                      multivariate=True, group=False, constant_liar=True)


def make_storage(args: Args, sweep: Sweep):
    if args.storage is None:
        path = Path(args.logs_dir) / f"{sweep.name}.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    # Heartbeats (experimental in Optuna, hence the filter): a trial whose worker was killed is marked failed,
    # and counted, instead of running forever. Workers started together race to create the tables; the
    # losers see an error from the database and try again.
    import sqlalchemy

    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(args.storage, heartbeat_interval=60, grace_period=180)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(1 + attempt)


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def run_study(args: Args, sweep: Sweep, study: optuna.Study) -> None:
    logs = Path(args.logs_dir) / sweep.name
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    if finished >= sweep.max_trials:
        print(f"{sweep.name}: {finished} trials finished, the cap is {sweep.max_trials}: nothing to run", flush=True)
        return
    print(f"{sweep.name}: {finished} of {sweep.max_trials} trials finished; {args.workers} at a time here", flush=True)
    execute = Executor(args)
    lock = threading.Lock()

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with lock:
            value = "—" if trial.value is None else f"{trial.value:.3f}"
            print(f"trial {trial.number}: {trial.state.name.lower()} {value} {trial.params}", flush=True)
            write_report(args, sweep, study)

    try:
        study.optimize(make_objective(sweep, execute, logs), n_trials=sweep.max_trials - finished, n_jobs=args.workers,
                       catch=(RunFailed,), gc_after_trial=False,
                       callbacks=[optuna.study.MaxTrialsCallback(sweep.max_trials, states=FINISHED), after_trial])
    finally:
        execute.close()


# ---------------------------------------------------------------------------------------- The report
def best_command(sweep: Sweep, trial: optuna.trial.FrozenTrial) -> str:
    env_id = next(iter(sweep.envs))
    return shlex.join(["python", f"algorithms/{sweep.script}", "--env-id", env_id, "--total-timesteps",
                       str(sweep.total_timesteps), *sweep.args, *command_line_args(trial.params)])


def write_report(args: Args, sweep: Sweep, study: optuna.Study) -> Path:
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
    counts = {state.name.lower(): sum(trial.state == state for trial in trials) for state in optuna.trial.TrialState}
    runs = len(trial_runs(sweep))
    lines = [f"# Sweep `{sweep.name}`: {sweep.script} on {', '.join(sweep.envs)}", "",
             f"Produced by `python benchmarks/sweep.py --sweep {sweep.path}`. Objective: "
             f"the mean over {runs} runs (seeds {', '.join(map(str, sweep.seeds))} on each env) of the deterministic "
             f"evaluation return after {sweep.total_timesteps:,} steps, normalised to 0 for the uniform random policy "
             "and 1 for the reference (" + ", ".join(f"{env} [{low:g}, {high:g}]" for env, (low, high) in sweep.envs.items())
             + f"). Pruner: {sweep.pruner}. Trials: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
             + f" (cap {sweep.max_trials}).", ""]
    if complete:
        best = study.best_trial
        lines += [f"**Best: trial {best.number}, score {best.value:.3f}** (per run: "
                  f"{', '.join(f'{score:.2f}' for score in best.user_attrs.get('scores', []))}); its command, "
                  "for each env and seed:", "", "```bash",
                  best_command(sweep, best) + " --seed N", "```", ""]
        plot = plot_study(args, sweep, study)
        if plot:
            lines += [f"![{sweep.name}]({os.path.relpath(plot.resolve(), Path(args.report_dir).resolve())})", ""]
    names = list(sweep.space)
    lines += ["| trial | state | score | runs | " + " | ".join(names) + " |", "|---" * (4 + len(names)) + "|"]
    for trial in sorted(trials, key=lambda trial: -math.inf if trial.value is None else -trial.value):
        value = "—" if trial.value is None else f"{trial.value:.3f}"
        values = [format_value(trial.params.get(name, "")) for name in names]
        lines.append(f"| {trial.number} | {trial.state.name.lower()} | {value} | "
                     f"{len(trial.user_attrs.get('scores', []))}/{runs} | " + " | ".join(values) + " |")
    path = Path(args.report_dir) / f"{sweep.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def format_value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_study(args: Args, sweep: Sweep, study: optuna.Study) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state == optuna.trial.TrialState.COMPLETE]
    complete.sort(key=lambda trial: trial.number)
    figure, (history, importance) = plt.subplots(1, 2, figsize=(11, 4))
    numbers, values = [trial.number for trial in complete], [trial.value for trial in complete]
    history.plot(numbers, values, "o", label="complete trial")
    history.step(numbers, np.maximum.accumulate(values), where="post", label="best so far")
    history.set(title=f"{sweep.name}: optimisation history", xlabel="trial", ylabel="normalised score")
    history.grid(alpha=0.3)
    history.legend(fontsize=8)
    if len(complete) >= 2 and len({tuple(sorted(trial.params.items())) for trial in complete}) >= 2:
        # PED-ANOVA (Watanabe et al. 2023): how much each parameter's distribution in the top 10% of trials
        # departs from its distribution over all of them; deterministic, and needs no scikit-learn (fANOVA does)
        with warnings.catch_warnings():  # with a few trials the top 10% is every trial: equal bars, and a warning
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=0.1))
        importance.barh(list(importances)[::-1], list(importances.values())[::-1])
    importance.set(title="parameter importance (PED-ANOVA, top 10% of trials)", xlabel="normalised importance")
    path = Path(args.plots_dir) / f"sweep-{sweep.name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(args: Args) -> int:
    if args.workers < 1 or args.max_retries < 0:
        raise SystemExit(f"--workers must be >= 1 and --max-retries >= 0; got {args.workers}, {args.max_retries}")
    if args.backend != "ray" and (args.address or args.ray_cpus):
        raise SystemExit("--address and --ray-cpus go with --backend ray")
    sweep = load_sweep(args.sweep)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=sweep.name, storage=make_storage(args, sweep), direction="maximize",
                                sampler=make_sampler(sweep, args.sampler_seed), pruner=make_pruner(sweep),
                                load_if_exists=True)
    if not args.report_only:
        run_study(args, sweep, study)
    report = write_report(args, sweep, study)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
