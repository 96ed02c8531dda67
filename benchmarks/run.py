"""Benchmark runner: run a suite of jobs through the real scripts, collect, plot, render benchmarks.md.

A suite is a TOML file (benchmarks/suites/*.toml) listing jobs: script, env id, budget, seeds and
extra arguments, plus the published reference figure to print beside each row. Every (job, seed)
runs as a subprocess of `algorithms/{script}` in its own folder, one at a time by default so the
speeds are clean. A job whose results exist is skipped unless --force; a job that fails or is killed
is reported and the rest go on. A job that sets checkpoint_every, run with --checkpoints-dir, writes
checkpoints there; run again after a kill, the runner resumes it from its latest checkpoint, and
resumes every such interrupted run before it starts one not yet begun.

Two backends run the jobs. `--backend local` (the default) runs them here, `--workers` at a time, and
needs nothing but the requirements. `--backend ray` makes every (job, seed) a Ray task that runs the
same script as a subprocess on whichever node has a free CPU (a GPU for `--cuda` jobs) and returns the
run's files (summary.json, episodes.csv, the log) as its value, so the nodes share no filesystem; the
driver writes them where the local backend would, as each job lands. Without `--address` Ray runs
embedded on this machine (`address="local"`: it never joins a cluster that happens to be running here)
and stops with the runner; with `--address` the jobs go to that cluster (README: "Running the
benchmarks on a Ray cluster"). A job whose worker or node dies is rerun at most `--max-retries` times;
a job that fails on its own (its script exits non-zero) is reported once and not rerun. Ray gives each
task one CPU and sets OMP_NUM_THREADS=1 in it, so its figures are those of the local backend run with
OMP_NUM_THREADS=1, bitwise (tests/test_runner.py checks it).

    python benchmarks/run.py --suite benchmarks/suites/full.toml                 # run what is missing, render
    python benchmarks/run.py --suite benchmarks/suites/full.toml --only reinforce --force
    python benchmarks/run.py --suite benchmarks/suites/full.toml --only sac --seeds 1
    python benchmarks/run.py --suite benchmarks/suites/full.toml --render-only
    python benchmarks/run.py --only 1M-steps --checkpoints-dir ~/lucidrl-checkpoints   # resumes killed jobs
    python benchmarks/run.py --suite benchmarks/suites/quick.toml --backend ray          # embedded Ray
    python benchmarks/run.py --backend ray --address HEAD_IP:6379                          # a Ray cluster

Where things go, for a suite named S:
- benchmarks/logs/S/{job}/seed{n}/       raw runs (runs/*/episodes.csv, summary.json) and job.log; git-ignored
- benchmarks/results/S.csv               one row per (job, seed): the figures and the exact command
- benchmarks/results/S_curves.csv        each run's learning curve at 100 points (so a later session can
                                         re-render and skip finished jobs without the raw runs)
- benchmarks/plots/S-{env_id}.png        mean and min-max band over seeds, x = environment steps
- benchmarks.md                          rendered from the two CSV files and the suite's notes
"""

import csv
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import tyro

ROOT = Path(__file__).resolve().parent.parent
CURVE_POINTS = 100  # points per stored learning curve
RESULT_COLUMNS = ["job", "script", "env_id", "variant", "seed", "total_timesteps", "global_step",
                  "eval_return_mean", "eval_episodes", "last100_return", "reach_step", "reach_wall_time",
                  "sps", "learning_sps", "wall_time", "cpu", "cores", "python", "torch", "gymnasium", "date", "command"]


@dataclass
class Args:
    suite: str = "benchmarks/suites/full.toml"
    """the suite file (TOML)"""
    workers: int = 1
    """jobs run at once (1 keeps the speed figures clean)"""
    force: bool = False
    """rerun jobs whose results already exist"""
    only: Optional[str] = None
    """run only the jobs whose name contains this text"""
    seeds: Optional[tuple[int, ...]] = None
    """run only these seeds of each job (None: every seed the suite asks for; the rest stay to do)"""
    render_only: bool = False
    """run nothing: collect and render what exists"""
    logs_dir: str = "benchmarks/logs"
    """where the raw runs go (git-ignored)"""
    results_dir: str = "benchmarks/results"
    """where the results and curves CSV files go"""
    plots_dir: str = "benchmarks/plots"
    """where the learning-curve PNGs go"""
    markdown: Optional[str] = "benchmarks.md"
    """the page to render (None: do not render)"""
    checkpoints_dir: Optional[str] = None
    """checkpoint jobs that set checkpoint_every under this folder (keep it outside the work tree, e.g.
    ~/lucidrl-checkpoints); a killed job then resumes from its latest checkpoint when the runner is run again.
    With --backend ray it is a path on the node that runs the job: a job resumed on another node finds its
    checkpoints only where the nodes share this folder"""
    backend: Literal["local", "ray"] = "local"
    """local: jobs run here, --workers at a time; ray: each (job, seed) is a Ray task (one CPU, one GPU with
    --cuda), as many at once as the cluster has CPUs"""
    address: Optional[str] = None
    """--backend ray: the cluster's head (host:6379); None: an embedded Ray on this
    machine, started and stopped by the runner"""
    ray_cpus: Optional[int] = None
    """--backend ray without --address: CPUs of the embedded Ray (None: every core)"""
    max_retries: int = 2
    """--backend ray: times a job is rerun after its worker or node died (Ray's max_retries; the runner also
    bounds the memory monitor's retries with it, which Ray otherwise repeats forever)"""


@dataclass
class Job:
    script: str
    env_id: str
    seeds: list
    total_timesteps: Optional[int] = None  # None: a script that plans without env steps (value_iteration.py)
    variant: str = ""
    args: list = field(default_factory=list)
    reach: Optional[float] = None
    reference: str = ""
    reference_source: str = ""
    plot: bool = True
    timeout_seconds: Optional[float] = None
    checkpoint_every: Optional[int] = None  # environment steps between checkpoints, with --checkpoints-dir

    @property
    def name(self) -> str:
        variant = re.sub(r"[^A-Za-z0-9.]+", "-", self.variant).strip("-")
        return "__".join(part for part in (self.script[:-3], self.env_id, variant) if part)

    def command(self, seed) -> list:
        budget = [] if self.total_timesteps is None else ["--total-timesteps", str(self.total_timesteps)]
        return ["python", f"algorithms/{self.script}", "--env-id", self.env_id, *budget, *self.args, "--seed", str(seed)]


def load_suite(path: str) -> tuple:
    with open(path, "rb") as file:
        suite = tomllib.load(file)
    jobs = [Job(**{"seeds": suite.get("seeds", [1]), **job}) for job in suite["job"]]
    names = [job.name for job in jobs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"{path}: jobs need distinct script/env_id/variant: {sorted(duplicates)}")
    env_of = {job.name: job.env_id for job in jobs}
    families = suite.get("family", [])
    for family in families:  # each method names one job per environment, in the order of envs
        for method, job_names in family["methods"].items():
            if [env_of.get(name) for name in job_names] != list(family["envs"]):
                raise SystemExit(f"{path}: family {family['name']!r}, method {method!r}: its jobs {job_names} must "
                                 f"be jobs of this suite on {list(family['envs'])}, in that order")
    return Path(path).stem, jobs, suite.get("notes", {}), suite.get("appendix", []), families


# ---------------------------------------------------------------------------------------- Collect
def first_reach(steps: np.ndarray, returns: np.ndarray, wall_times: np.ndarray, score: float) -> tuple:
    """(global_step, wall_time) where the mean of the last 10 training returns first reaches score."""
    window = 10
    for index in range(window, len(returns) + 1):
        if returns[index - window:index].mean() >= score:
            return int(steps[index - 1]), float(wall_times[index - 1])
    return "", ""


def learning_curve(steps: np.ndarray, returns: np.ndarray, total_timesteps: int) -> tuple:
    """The running mean of the last max(10, n/50) episode returns, sampled at CURVE_POINTS steps."""
    window = max(10, len(returns) // 50)
    smoothed = np.convolve(returns, np.ones(window), "valid") / window
    grid = np.linspace(steps[window - 1], max(total_timesteps, steps[-1]), CURVE_POINTS)
    return grid, np.interp(grid, steps[window - 1:], smoothed)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0].strip() if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count()}


def collect(job: Job, seed, run_root: Path) -> Optional[tuple]:
    """The result row and curve points of a finished run, or None when it has no summary."""
    summaries = sorted(run_root.glob("runs/*/summary.json"))
    if not summaries:
        return None
    summary = json.loads(summaries[-1].read_text())
    episodes = read_csv(summaries[-1].parent / "episodes.csv")  # none for planning scripts
    steps = np.array([float(row["global_step"]) for row in episodes])
    returns = np.array([float(row["episode_return"]) for row in episodes])
    wall_times = np.array([float(row["wall_time"]) for row in episodes])
    reach_step, reach_wall_time = first_reach(steps, returns, wall_times, job.reach) if job.reach is not None else ("", "")
    versions = summary["versions"]
    row = {"job": job.name, "script": job.script, "env_id": job.env_id, "variant": job.variant, "seed": seed,
           "total_timesteps": job.total_timesteps or "", "global_step": summary["global_step"],
           "eval_return_mean": summary["eval_return_mean"], "eval_episodes": len(summary["eval_returns"]),
           "last100_return": returns[-100:].mean() if len(returns) else "", "reach_step": reach_step,
           "reach_wall_time": reach_wall_time, "sps": summary["sps"], "learning_sps": summary.get("learning_sps") or "",
           "wall_time": summary["wall_time"],
           **machine(), "python": versions.get("python", ""), "torch": versions.get("torch", ""),
           "gymnasium": versions.get("gymnasium", ""), "date": date.today().isoformat(),
           "command": shlex.join(job.command(seed))}
    curve = []
    if len(returns) >= 10:
        grid, values = learning_curve(steps, returns, job.total_timesteps)
        curve = [{"job": job.name, "seed": seed, "step": int(x), "return": float(y)} for x, y in zip(grid, values)]
    return row, curve


def read_csv(path: Path) -> list:
    if not path.exists():
        return []
    with open(path) as file:
        return list(csv.DictReader(file))


def write_csv(path: Path, rows: list, columns: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------- Run
def latest_checkpoint(checkpoint_dir: Optional[Path]) -> Optional[Path]:
    found = sorted(checkpoint_dir.glob("checkpoint_*.pt")) if checkpoint_dir else []
    return found[-1] if found else None


def interrupted_first(todo: list, checkpoints_of) -> list:
    """The (job, seed) runs that have a checkpoint (interrupted mid-run) before those not yet started, each
    group in suite order: a runner restarted with --workers N resumes what it had under way before it starts
    anything new, so the runs it finishes first are the ones it began first."""
    return sorted(todo, key=lambda item: latest_checkpoint(checkpoints_of(*item)) is None)


def die_with_parent() -> None:
    """preexec_fn: the kernel kills the script when the process that started it dies (Linux's
    PR_SET_PDEATHSIG), so a Ray task killed with its worker does not leave its training running."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def run_one(job: Job, seed, run_root: Path, label: str, checkpoint_dir: Optional[Path] = None,
            root: Path = ROOT, kill_with_parent: bool = False) -> tuple:
    """Run one (job, seed) in its own folder, streaming its progress lines; returns (ok, message). With a
    checkpoint folder the script writes checkpoints there, and continues from the latest one it finds.
    root: the repository (on a Ray node, the copy Ray unpacked there)."""
    command = [sys.executable, str(root / "algorithms" / job.script), *job.command(seed)[2:]]
    latest = latest_checkpoint(checkpoint_dir)
    if checkpoint_dir:
        command += ["--checkpoint-every", str(job.checkpoint_every), "--checkpoint-dir", str(checkpoint_dir)]
    if latest:  # the run goes on in its own run directory; the steps before the checkpoint are not redone
        command += ["--resume", str(latest)]
        print(f"  {label} | resuming from {latest}", flush=True)
    else:
        shutil.rmtree(run_root / "runs", ignore_errors=True)  # a rerun replaces the old run
    run_root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled"), "MUJOCO_GL": "egl"}
    start = time.time()
    with open(run_root / "job.log", "a" if latest else "w") as log:
        process = subprocess.Popen(command, cwd=run_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, preexec_fn=die_with_parent if kill_with_parent else None)
        timer = threading.Timer(job.timeout_seconds, process.kill) if job.timeout_seconds else None
        if timer:
            timer.start()
        for line in process.stdout:
            log.write(line)
            if line.startswith("step "):
                print(f"  {label} | {line.strip()}", flush=True)
        returncode = process.wait()
        if timer:
            timer.cancel()
    seconds = time.time() - start
    if returncode == 0:
        return True, f"done in {seconds:.1f}s"
    cause = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    return False, f"FAILED ({cause}) after {seconds:.1f}s; see {run_root / 'job.log'}"


def run_suite(args: Args, suite: str, jobs: list, done: set) -> list:
    """Run every (job, seed) not yet done; returns the failures. Done: in the results file, or a finished
    raw run (with its summary.json) that a killed runner never got to write there."""
    def finished(job: Job, seed) -> bool:
        return (job.name, str(seed)) in done or any(run_root(job, seed).glob("runs/*/summary.json"))

    def run_root(job: Job, seed) -> Path:
        return Path(args.logs_dir) / suite / job.name / f"seed{seed}"

    def checkpoint_dir(job: Job, seed) -> Optional[Path]:
        if args.checkpoints_dir is None or job.checkpoint_every is None:
            return None
        return Path(args.checkpoints_dir).expanduser() / suite / job.name / f"seed{seed}"

    todo = [(job, seed) for job in jobs for seed in job.seeds
            if (args.only is None or args.only in job.name) and (args.seeds is None or seed in args.seeds)
            and (args.force or not finished(job, seed))]
    if args.force:  # a forced rerun starts over
        for job, seed in todo:
            if directory := checkpoint_dir(job, seed):
                shutil.rmtree(directory, ignore_errors=True)
    todo = interrupted_first(todo, checkpoint_dir)
    total_steps = sum(job.total_timesteps or 0 for job, _ in todo)
    at_once = "as many at a time as the Ray cluster has CPUs" if args.backend == "ray" else f"{args.workers} at a time"
    print(f"{suite}: {len(todo)} runs to do ({total_steps:,} environment steps), {at_once}", flush=True)
    progress = {"finished": 0, "steps": 0, "start": time.time()}
    failures = []
    lock = threading.Lock()

    def report(job: Job, seed, ok: bool, message: str) -> None:
        label = f"{job.name} seed {seed}"
        with lock:
            progress["finished"] += 1
            progress["steps"] += job.total_timesteps or 0
            elapsed = time.time() - progress["start"]
            eta = elapsed / max(progress["steps"], 1) * (total_steps - progress["steps"])
            print(f"[{progress['finished']}/{len(todo)}] {label}: {message} | elapsed {elapsed / 60:.1f} min, "
                  f"ETA {eta / 60:.1f} min", flush=True)
            if not ok:
                failures.append(f"{label}: {message}")

    if args.backend == "ray":
        run_on_ray(args, todo, run_root, checkpoint_dir, report)
        return failures

    def work(item):
        job, seed = item
        report(job, seed, *run_one(job, seed, run_root(job, seed), f"{job.name} seed {seed}", checkpoint_dir(job, seed)))

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(work, todo))
    return failures


# ---------------------------------------------------------------------------------------- Run on Ray
RETURNED_FILE_LIMIT = 64 * 2**20  # bytes; a bigger file (a saved replay buffer, a video) stays on its node


def run_remote(job: Job, seed, label: str, checkpoint_dir: Optional[str]) -> dict:
    """The Ray task: run one (job, seed) in a scratch folder on this node and return the run's files as
    bytes by path ({"runs/<name>/summary.json": ..., "job.log": ...}), so the driver needs no shared
    filesystem. The working directory is the repository as Ray unpacked it here (runtime_env working_dir)."""
    import ray

    scratch = Path(tempfile.mkdtemp(prefix="lucidrl-job-"))
    try:
        checkpoints = Path(checkpoint_dir) if checkpoint_dir else None
        resumed = latest_checkpoint(checkpoints) is not None
        ok, message = run_one(job, seed, scratch, label, checkpoints, root=Path.cwd(), kill_with_parent=True)
        files, left_out = {}, []
        for path in sorted(scratch.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(scratch))
                if path.stat().st_size <= RETURNED_FILE_LIMIT:
                    files[name] = path.read_bytes()
                else:
                    left_out.append(name)
        node = ray.util.get_node_ip_address()
        message = message.replace(str(scratch / "job.log"), "job.log") + f" on {node}" + (
            f" (left on the node, over {RETURNED_FILE_LIMIT >> 20} MiB: {', '.join(left_out)})" if left_out else "")
        return {"ok": ok, "message": message, "files": files, "resumed": resumed}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def start_ray(address: Optional[str], cpus: Optional[int], max_retries: int):
    """Join the Ray cluster at address, or start an embedded one (None); returns run_remote as a Ray task
    with one CPU, rerun at most max_retries times when its worker or node dies and never when it fails."""
    import ray

    if __name__ != "__main__":  # imported (by sweep.py, a test): Ray ships this module's functions by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runtime_env = {"working_dir": str(ROOT), "excludes": [".git", "benchmarks/logs", "benchmarks/plots", "runs"]}
    if address is None:
        # The embedded Ray's raylet reads this when it starts: the memory monitor's kills count against
        # a bound instead of retrying forever (Ray's default, RAY_task_oom_retries = -1).
        os.environ.setdefault("RAY_task_oom_retries", str(max_retries))
        ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=100 * 2**20, runtime_env=runtime_env)
    else:
        ray.init(address=address, runtime_env=runtime_env)
    return ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(run_remote)


def submit(remote, job: Job, seed, label: str, checkpoint_dir: Optional[Path] = None):
    """One (job, seed) as a Ray task (with a GPU for --cuda jobs); returns its object reference."""
    options = {"num_gpus": 1} if "--cuda" in job.args else {}
    return remote.options(name=label, **options).remote(job, seed, label, checkpoint_dir and str(checkpoint_dir))


def land(reference, root: Path, max_retries: int) -> tuple:
    """Wait for a Ray task and write the run's files under root as the local backend leaves them;
    returns (ok, message)."""
    import ray

    try:
        result = ray.get(reference)
    except ray.exceptions.RayError as error:  # its worker or node died more than max_retries times
        return False, f"FAILED on Ray after {max_retries} retries: {type(error).__name__}: {str(error).splitlines()[0]}"
    if not result["resumed"]:
        shutil.rmtree(root / "runs", ignore_errors=True)  # a rerun replaces the old run
    for name, content in result["files"].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "job.log" and result["resumed"]:
            content = (path.read_bytes() if path.exists() else b"") + content
        path.write_bytes(content)
    return result["ok"], result["message"].replace("see job.log", f"see {root / 'job.log'}")


def run_on_ray(args: Args, todo: list, run_root, checkpoint_dir, report) -> None:
    """Submit every (job, seed) as a Ray task; write each one's files under its run folder as it lands."""
    import ray

    remote = start_ray(args.address, args.ray_cpus, args.max_retries)
    pending = {submit(remote, job, seed, f"{job.name} seed {seed}", checkpoint_dir(job, seed)): (job, seed)
               for job, seed in todo}
    try:
        while pending:
            (reference,), _ = ray.wait(list(pending), num_returns=1)
            job, seed = pending.pop(reference)
            report(job, seed, *land(reference, run_root(job, seed), args.max_retries))
    finally:
        for reference in pending:  # the runner stopped early (Ctrl-C): the jobs in flight go with it
            ray.cancel(reference, force=True)
        ray.shutdown()


# ---------------------------------------------------------------------------------------- Render
def sps_cell(job: Job, job_rows: list) -> str:
    """Whole-run SPS, plus the learning-phase SPS for scripts that report one."""
    if job.total_timesteps is None:
        return "—"  # planning takes no environment steps
    learning = [row.get("learning_sps") or "" for row in job_rows]
    return mean_std([row["sps"] for row in job_rows], 0) + (
        f"; learning {mean_std(learning, 0)}" if any(value != "" for value in learning) else "")


def mean_std(values: list, digits: Optional[int] = None, spread: bool = False) -> str:
    """"mean ± sample std" over seeds (n − 1 in the denominator; one value alone has none); spread adds
    the min and max. By default 2 decimals, 3 for values below 1 (success rates, Blackjack returns)."""
    values = [float(value) for value in values if value != ""]
    if not values:
        return "—"
    if digits is None:
        digits = 3 if max(abs(value) for value in values) < 1 else 2
    text = f"{np.mean(values):,.{digits}f}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1):,.{digits}f}"
        if spread:
            text += f" [{min(values):,.{digits}f}, {max(values):,.{digits}f}]"
    return text


def plot_env(env_id: str, jobs: list, curves: list, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    drawn = False
    for job in jobs:
        by_seed = {}
        for point in curves:
            if point["job"] == job.name:
                by_seed.setdefault(point["seed"], []).append((float(point["step"]), float(point["return"])))
        if not job.plot or not by_seed:
            continue
        grid = np.linspace(0, job.total_timesteps, CURVE_POINTS)
        # Each seed's curve on a common grid (no extrapolation before its first point).
        values = np.array([np.interp(grid, *zip(*sorted(points)), left=np.nan) for points in by_seed.values()])
        grid, values = grid[~np.isnan(values).all(0)], values[:, ~np.isnan(values).all(0)]
        label = f"{job.script}" + (f" ({job.variant})" if job.variant else "") + f", seeds: {len(by_seed)}"
        line, = axes.plot(grid, np.nanmean(values, 0), label=label)
        axes.fill_between(grid, np.nanmin(values, 0), np.nanmax(values, 0), color=line.get_color(), alpha=0.2)
        drawn = True
    if drawn:
        axes.set(title=env_id, xlabel="environment steps", ylabel="training episode return (running mean)")
        save_figure(figure, axes, path)
    plt.close(figure)
    return drawn


def save_figure(figure, axes, path: Path) -> None:
    """Grid, legend, tight layout, PNG at path."""
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def render(args: Args, suite: str, jobs: list, notes: dict, rows: list, curves: list, appendix: list,
           families: list = ()) -> str:
    markdown_dir = Path(args.markdown).resolve().parent
    env_ids = list(dict.fromkeys(job.env_id for job in jobs))
    def values_of(column: str) -> str:
        return " / ".join(sorted({str(row[column]) for row in rows if row[column] != ""})) or "—"

    lines = ["# Benchmarks", "",
             "Every figure on this page was produced by `benchmarks/run.py` from real runs of the scripts; "
             "rerun them with", "", "```bash", f"python benchmarks/run.py --suite {args.suite} --force", "```", "",
             "(or without `--force` to run only what is missing), or any single row with its command. Runs are "
             "deterministic on CPU for a given seed and thread count; speeds depend on the machine.", "",
             f"**Machine:** {values_of('cpu')}, {values_of('cores')} cores; Python {values_of('python')}, "
             f"torch {values_of('torch')}, gymnasium {values_of('gymnasium')}. Measured {values_of('date')}, "
             "one run at a time.", "",
             "**Columns:** *eval* — mean ± std [min, max] over seeds of each seed's deterministic (greedy) "
             "evaluation at the end of training; *last 100* — the same of the mean return of the last 100 "
             "training episodes (exploring policy); every std in these tables is the sample standard deviation "
             "over seeds (n − 1 in the denominator), and *seeds* gives n; *SPS* — environment steps per second "
             "over the whole run (off-policy "
             "scripts add, after *learning*, the rate after the random warm-up, when every step pays for a "
             "gradient update); *wall* — "
             "seconds per run; *reached* — first step (and seconds) at which the last 10 training episodes "
             "average at least the given score. The command runs one seed: replace N by each seed.", ""]
    # Figures that need many runs of a script (averages over runs, policy tables, speed beside other
    # libraries) are made by their own scripts, each writing a markdown fragment that is included here:
    # sections with position = "top" before the per-env tables, the rest after them.
    lines += render_sections([section for section in appendix if section.get("position") == "top"])
    for env_id in env_ids:
        env_jobs = [job for job in jobs if job.env_id == env_id]
        lines += [f"## {env_id}", ""]
        plot_path = Path(args.plots_dir) / f"{suite}-{env_id.replace('/', '-')}.png"
        if plot_env(env_id, env_jobs, curves, plot_path):
            lines += [f"![{env_id} learning curves]({os.path.relpath(plot_path.resolve(), markdown_dir)})", ""]
        lines += ["| script | variant | steps | seeds | eval | last 100 | SPS | wall (s) | reached | reference | command |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for job in env_jobs:
            job_rows = [row for row in rows if row["job"] == job.name]
            reached = "—"
            if job.reach is not None and job_rows:
                hits = [row for row in job_rows if row["reach_step"] != ""]
                reached = (f"{len(hits)}/{len(job_rows)} reach {job.reach:g}" + (
                    f": {mean_std([r['reach_step'] for r in hits], 0)} steps, "
                    f"{mean_std([r['reach_wall_time'] for r in hits], 1)} s" if hits else ""))
            reference = job.reference + (f" ({job.reference_source})" if job.reference_source else "")
            command = shlex.join(job.command("N"))
            steps = "planning" if job.total_timesteps is None else f"{job.total_timesteps:,}"
            lines.append(f"| {job.script} | {job.variant or 'defaults'} | {steps} | "
                         f"{len(job_rows)}/{len(job.seeds)} | "
                         f"{mean_std([r['eval_return_mean'] for r in job_rows], spread=True)} | "
                         f"{mean_std([r['last100_return'] for r in job_rows], spread=True)} | "
                         f"{sps_cell(job, job_rows)} | {mean_std([r['wall_time'] for r in job_rows], 1)} | "
                         f"{reached} | {reference or '—'} | `{command}` |")
        if env_id in notes:
            lines += ["", notes[env_id].strip()]  # markdown: paragraphs, lists and tables pass through
        lines.append("")
    lines += render_families(args, suite, families, rows, markdown_dir)
    lines += render_sections([section for section in appendix if section.get("position") != "top"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- Across environments
# Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice": with a few seeds per environment,
# summarise a method over several environments by the interquartile mean (IQM) of normalised scores, give a
# stratified-bootstrap confidence interval, and show the whole distribution as a performance profile.
# Per-environment intervals are not printed: three seeds allow only 10 distinct resamples.
BOOTSTRAP_RESAMPLES = 2000


def normalised_score(returns: np.ndarray, random: float, reference: float) -> np.ndarray:
    """0 = the uniform random policy's return, 1 = the reference's."""
    return (np.asarray(returns, dtype=float) - random) / (reference - random)


def interquartile_mean(scores: np.ndarray) -> float:
    """The mean of the middle half of the scores: int(n / 4) cut from each end, as
    scipy.stats.trim_mean(scores, 0.25) (the rliable library's IQM)."""
    ordered = np.sort(np.ravel(scores))
    cut = int(0.25 * len(ordered))
    return float(ordered[cut:len(ordered) - cut].mean())


def performance_profile(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The fraction of runs whose normalised score exceeds each threshold τ, shape (len(thresholds),)."""
    return (np.ravel(scores)[None, :] > np.asarray(thresholds)[:, None]).mean(axis=1)


def stratified_bootstrap(scores_by_env: list, statistic, confidence: float = 0.95, seed: int = 0) -> tuple:
    """The percentile interval of statistic(pooled scores) over BOOTSTRAP_RESAMPLES resamples, each drawing
    within every environment as many runs as it has, with replacement: the seeds vary, the set of
    environments does not. Seeded, so a re-render prints the same interval. statistic may return an array
    (a profile): the bounds then have its shape."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(np.concatenate([env_scores[rng.integers(0, len(env_scores), len(env_scores))]
                                                 for env_scores in scores_by_env]))
                       for _ in range(BOOTSTRAP_RESAMPLES)])
    tail = 50 * (1 - confidence)
    return np.percentile(values, tail, axis=0), np.percentile(values, 100 - tail, axis=0)


def render_families(args: Args, suite: str, families: list, rows: list, markdown_dir: Path) -> list:
    """For each family (methods × environments, in the suite file): the IQM table and a performance profile."""
    if not families:
        return []
    lines = ["## Across environments", "",
             "Each run's deterministic evaluation, normalised to 0 for the uniform random policy and 1 for the "
             "family's reference; per method the interquartile mean (IQM) of all its runs (environments × "
             f"seeds) with a 95% stratified-bootstrap interval ({BOOTSTRAP_RESAMPLES:,} resamples of the seeds "
             "within each environment, seeded), the median and the mean, and a performance profile: the fraction "
             "of runs scoring above τ (Agarwal et al. 2021). With 3 seeds an environment allows only 10 distinct "
             "resamples, so no per-environment interval is given.", ""]
    for family in families:
        envs = family["envs"]
        env_list = ", ".join(f"{env_id} [{low:,.1f}, {high:,.1f}]" for env_id, (low, high) in envs.items())
        lines += [f"### {family['name']}", "", f"Normalised to [random, reference]: {env_list}; the reference is "
                  f"{family['reference']}." + (f" {family['note'].strip()}" if family.get("note") else ""), ""]
        lines += ["| method | runs | IQM [95% CI] | median | mean | mean per environment |", "|---|---|---|---|---|---|"]
        profiles = {}
        for method, job_names in family["methods"].items():
            scores_by_env = []
            for (env_id, (random, reference)), job_name in zip(envs.items(), job_names):
                returns = [float(row["eval_return_mean"]) for row in rows
                           if row["job"] == job_name and row["eval_return_mean"] != ""]
                scores_by_env.append(normalised_score(np.array(returns), random, reference))
            counts = " + ".join(str(len(env_scores)) for env_scores in scores_by_env)
            if any(len(env_scores) == 0 for env_scores in scores_by_env):
                lines.append(f"| {method} | {counts} | — (an environment has no runs yet) | — | — | — |")
                continue
            pooled = np.concatenate(scores_by_env)
            low, high = stratified_bootstrap(scores_by_env, interquartile_mean)
            per_env = ", ".join(f"{env_scores.mean():.2f}" for env_scores in scores_by_env)
            lines.append(f"| {method} | {counts} | {interquartile_mean(pooled):.2f} [{low:.2f}, {high:.2f}] | "
                         f"{np.median(pooled):.2f} | {pooled.mean():.2f} | {per_env} |")
            profiles[method] = scores_by_env
        slug = re.sub(r"[^A-Za-z0-9]+", "-", family["name"]).strip("-").lower()
        plot_path = Path(args.plots_dir) / f"{suite}-profile-{slug}.png"
        if profiles and plot_profiles(family["name"], profiles, plot_path):
            lines += ["", f"![{family['name']}: performance profiles]({os.path.relpath(plot_path.resolve(), markdown_dir)})"]
        lines.append("")
    return lines


def plot_profiles(title: str, profiles: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = np.concatenate([score for scores in profiles.values() for score in scores])
    thresholds = np.linspace(min(0.0, pooled.min()), max(1.0, pooled.max()), 201)
    figure, axes = plt.subplots(figsize=(7, 4))
    for method, scores_by_env in profiles.items():
        low, high = stratified_bootstrap(scores_by_env, lambda scores: performance_profile(scores, thresholds))
        line, = axes.step(thresholds, performance_profile(np.concatenate(scores_by_env), thresholds), where="post",
                          label=method)
        axes.fill_between(thresholds, low, high, step="post", color=line.get_color(), alpha=0.15)
    axes.set(title=title, xlabel="normalised score τ", ylabel="fraction of runs with score > τ", ylim=(0, 1.02))
    save_figure(figure, axes, path)
    plt.close(figure)
    return True


def render_sections(sections: list) -> list:
    lines = []
    for section in sections:
        lines += [f"## {section['title']}", "", section.get("intro", "").strip(), ""]
        for fragment in section["fragments"]:
            path = ROOT / fragment
            lines += [path.read_text().strip() if path.exists() else f"*{fragment} has not been produced yet.*", ""]
    return lines


def main(args: Args) -> int:
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1; got {args.workers}")
    if args.backend != "ray" and (args.address or args.ray_cpus):
        raise SystemExit("--address and --ray-cpus go with --backend ray")
    if args.max_retries < 0 or (args.ray_cpus is not None and args.ray_cpus < 1):
        raise SystemExit(f"--max-retries must be >= 0 and --ray-cpus >= 1; got {args.max_retries}, {args.ray_cpus}")
    suite, jobs, notes, appendix, families = load_suite(args.suite)
    results_path = Path(args.results_dir) / f"{suite}.csv"
    curves_path = Path(args.results_dir) / f"{suite}_curves.csv"
    rows = {(row["job"], row["seed"]): row for row in read_csv(results_path)}
    failures = [] if args.render_only else run_suite(args, suite, jobs, set(rows))

    # Collect every raw run present (new or old) over what the results files held.
    curves = read_csv(curves_path)
    for job in jobs:
        for seed in job.seeds:
            collected = collect(job, seed, Path(args.logs_dir) / suite / job.name / f"seed{seed}")
            if collected:
                row, curve = collected
                rows[(job.name, str(seed))] = row
                curves = [p for p in curves if (p["job"], str(p["seed"])) != (job.name, str(seed))] + curve
    known = {job.name for job in jobs}
    result_rows = [row for row in rows.values() if row["job"] in known]
    write_csv(results_path, result_rows, RESULT_COLUMNS)
    write_csv(curves_path, [p for p in curves if p["job"] in known], ["job", "seed", "step", "return"])
    if args.markdown:
        Path(args.markdown).write_text(render(args, suite, jobs, notes, result_rows, curves, appendix, families))
        print(f"rendered {args.markdown} from {len(result_rows)} runs")
    for failure in failures:
        print(f"failed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
