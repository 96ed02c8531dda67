"""Benchmark runner: run a suite of jobs through the real scripts, collect, plot, render benchmarks.md.

A suite is a TOML file (benchmarks/suites/*.toml) listing jobs: script, env id, budget, seeds and
extra arguments, plus the published reference figure to print beside each row. Every (job, seed)
runs as a subprocess of `algorithms/{script}` in its own folder, one at a time by default so the
speeds are clean. A job whose results exist is skipped unless --force; a job that fails or is killed
is reported and the rest go on. A job that sets checkpoint_every, run with --checkpoints-dir, writes
checkpoints there; run again after a kill, the runner resumes it from its latest checkpoint.

    python benchmarks/run.py --suite benchmarks/suites/full.toml                 # run what is missing, render
    python benchmarks/run.py --suite benchmarks/suites/full.toml --only reinforce --force
    python benchmarks/run.py --suite benchmarks/suites/full.toml --only sac --seeds 1
    python benchmarks/run.py --suite benchmarks/suites/full.toml --render-only
    python benchmarks/run.py --only 1M-steps --checkpoints-dir ~/lucidrl-checkpoints   # resumes killed jobs

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
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Optional

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
    ~/lucidrl-checkpoints); a killed job then resumes from its latest checkpoint when the runner is run again"""


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
    return Path(path).stem, jobs, suite.get("notes", {}), suite.get("appendix", [])


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
def run_one(job: Job, seed, run_root: Path, label: str, checkpoint_dir: Optional[Path] = None) -> tuple:
    """Run one (job, seed) in its own folder, streaming its progress lines; returns (ok, message). With a
    checkpoint folder the script writes checkpoints there, and continues from the latest one it finds."""
    command = [sys.executable, str(ROOT / "algorithms" / job.script), *job.command(seed)[2:]]
    latest = sorted(checkpoint_dir.glob("checkpoint_*.pt"))[-1:] if checkpoint_dir else []
    if checkpoint_dir:
        command += ["--checkpoint-every", str(job.checkpoint_every), "--checkpoint-dir", str(checkpoint_dir)]
    if latest:  # the run goes on in its own run directory; the steps before the checkpoint are not redone
        command += ["--resume", str(latest[0])]
        print(f"  {label} | resuming from {latest[0]}", flush=True)
    else:
        shutil.rmtree(run_root / "runs", ignore_errors=True)  # a rerun replaces the old run
    run_root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled"), "MUJOCO_GL": "egl"}
    start = time.time()
    with open(run_root / "job.log", "a" if latest else "w") as log:
        process = subprocess.Popen(command, cwd=run_root, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
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
        run_root = Path(args.logs_dir) / suite / job.name / f"seed{seed}"
        return (job.name, str(seed)) in done or any(run_root.glob("runs/*/summary.json"))

    todo = [(job, seed) for job in jobs for seed in job.seeds
            if (args.only is None or args.only in job.name) and (args.seeds is None or seed in args.seeds)
            and (args.force or not finished(job, seed))]
    total_steps = sum(job.total_timesteps or 0 for job, _ in todo)
    print(f"{suite}: {len(todo)} runs to do ({total_steps:,} environment steps), {args.workers} at a time", flush=True)
    progress = {"finished": 0, "steps": 0, "start": time.time()}
    failures = []
    lock = threading.Lock()

    def checkpoint_dir(job: Job, seed) -> Optional[Path]:
        if args.checkpoints_dir is None or job.checkpoint_every is None:
            return None
        directory = Path(args.checkpoints_dir).expanduser() / suite / job.name / f"seed{seed}"
        if args.force:  # a forced rerun starts over
            shutil.rmtree(directory, ignore_errors=True)
        return directory

    def work(item):
        job, seed = item
        label = f"{job.name} seed {seed}"
        ok, message = run_one(job, seed, Path(args.logs_dir) / suite / job.name / f"seed{seed}", label,
                              checkpoint_dir(job, seed))
        with lock:
            progress["finished"] += 1
            progress["steps"] += job.total_timesteps or 0
            elapsed = time.time() - progress["start"]
            eta = elapsed / max(progress["steps"], 1) * (total_steps - progress["steps"])
            print(f"[{progress['finished']}/{len(todo)}] {label}: {message} | elapsed {elapsed / 60:.1f} min, "
                  f"ETA {eta / 60:.1f} min", flush=True)
            if not ok:
                failures.append(f"{label}: {message}")

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(work, todo))
    return failures


# ---------------------------------------------------------------------------------------- Render
def sps_cell(job: Job, job_rows: list) -> str:
    """Whole-run SPS, plus the learning-phase SPS for scripts that report one."""
    if job.total_timesteps is None:
        return "—"  # planning takes no environment steps
    learning = [row.get("learning_sps") or "" for row in job_rows]
    return mean_std([row["sps"] for row in job_rows], 0) + (
        f"; learning {mean_std(learning, 0)}" if any(value != "" for value in learning) else "")


def mean_std(values: list, digits: Optional[int] = None) -> str:
    """"mean ± std"; by default 2 decimals, 3 for values below 1 (success rates, Blackjack returns)."""
    values = [float(value) for value in values if value != ""]
    if digits is None:
        digits = 3 if values and max(abs(value) for value in values) < 1 else 2
    return f"{np.mean(values):,.{digits}f} ± {np.std(values):,.{digits}f}" if values else "—"


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
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    plt.close(figure)
    return drawn


def render(args: Args, suite: str, jobs: list, notes: dict, rows: list, curves: list, appendix: list) -> str:
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
             "**Columns:** *eval* — mean ± std over seeds of each seed's deterministic (greedy) evaluation at the "
             "end of training; *last 100* — mean ± std over seeds of the mean return of the last 100 training "
             "episodes (exploring policy); *SPS* — environment steps per second over the whole run (off-policy "
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
                         f"{len(job_rows)}/{len(job.seeds)} | {mean_std([r['eval_return_mean'] for r in job_rows])} | "
                         f"{mean_std([r['last100_return'] for r in job_rows])} | "
                         f"{sps_cell(job, job_rows)} | {mean_std([r['wall_time'] for r in job_rows], 1)} | "
                         f"{reached} | {reference or '—'} | `{command}` |")
        if env_id in notes:
            lines += ["", notes[env_id].strip()]  # markdown: paragraphs, lists and tables pass through
        lines.append("")
    lines += render_sections([section for section in appendix if section.get("position") != "top"])
    return "\n".join(lines)


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
    suite, jobs, notes, appendix = load_suite(args.suite)
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
        Path(args.markdown).write_text(render(args, suite, jobs, notes, result_rows, curves, appendix))
        print(f"rendered {args.markdown} from {len(result_rows)} runs")
    for failure in failures:
        print(f"failed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
