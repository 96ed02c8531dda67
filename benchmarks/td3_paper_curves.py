"""td3.py's MuJoCo learning curves beside the TD3 paper's own (Fujimoto et al. 2018, Figure 5).

The paper's authors publish every curve of its Figure 5 in their repository (github.com/sfujim/TD3,
learning_curves/, MIT licence): 10 seeds per environment, each a NumPy array of 201 evaluations, one every
5,000 steps from step 0 to 1M, each the mean return of 10 episodes of the deterministic policy. The paper
ran the v1 environments with 1,000 random steps first on Hopper and Walker2d and 10,000 on HalfCheetah;
td3.py (CleanRL's settings) runs the v5 environments with 25,000.

    # once: the paper's curves into benchmarks/results/td3_paper_curves.csv (checked in; sfujim/TD3 34770cc)
    git clone https://github.com/sfujim/TD3 ~/TD3
    python benchmarks/td3_paper_curves.py import --learning-curves ~/TD3/learning_curves
    # the figure and the table, from the suite's finished td3.py rows (benchmarks/results/full*.csv) and,
    # with --logs-dir, the runs still going (their episodes.csv so far). A run that has just finished
    # reaches full*.csv when run.py collects it, so render first, then plot, then render the page again
    # (it includes the table this writes):
    python benchmarks/run.py --render-only --logs-dir ~/lucidrl-logs
    python benchmarks/td3_paper_curves.py plot --logs-dir ~/lucidrl-logs
    python benchmarks/run.py --render-only --logs-dir ~/lucidrl-logs

Two different measurements meet here, and the figure says so: the paper's points are deterministic
evaluations; td3.py's curves are its training episodes (the running mean of benchmarks/run.py's curves),
played with exploration noise (σ = 0.1), and its final deterministic evaluation is drawn as a marker.
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import learning_curve, read_csv, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAPER_CSV = ROOT / "benchmarks" / "results" / "td3_paper_curves.csv"
PAPER_EVAL_EVERY = 5_000  # environment steps between the paper's evaluations
# (the repository's folder, the paper's env id) -> the env td3.py's rows run
ENVS = {("Hopper", "Hopper-v1"): "Hopper-v5", ("HalfCheetah", "HalfCheetah-v1"): "HalfCheetah-v5",
        ("Walker", "Walker2d-v1"): "Walker2d-v5"}
TABLE_STEPS = (100_000, 200_000, 500_000, 1_000_000)


@dataclass
class Import:
    """Read sfujim/TD3's learning_curves/*.npy into one CSV (env, seed, step, return)."""

    learning_curves: str
    """the learning_curves folder of a checkout of github.com/sfujim/TD3"""
    out: str = str(PAPER_CSV)


@dataclass
class Plot:
    """Draw td3.py's curves over the paper's and print the table at 100k, 200k, 500k and 1M steps."""

    paper: str = str(PAPER_CSV)
    results_dir: str = str(ROOT / "benchmarks" / "results")
    """where benchmarks/run.py keeps full.csv (final evaluations) and full_curves.csv (finished runs' curves)"""
    logs_dir: Optional[str] = None
    """benchmarks/run.py's --logs-dir: runs not finished yet are drawn from their episodes.csv so far"""
    out: str = str(ROOT / "benchmarks" / "plots" / "td3-vs-paper.png")
    fragment: Optional[str] = str(ROOT / "benchmarks" / "results" / "td3_paper.md")
    """the figure and the table as the markdown fragment benchmarks.md includes (None: print only)"""


def import_curves(learning_curves: Path) -> list:
    """One row per (env, seed, evaluation) of the paper's curves; refuses a folder without all three envs."""
    rows = []
    for (folder, paper_env), env_id in ENVS.items():
        files = sorted((learning_curves / folder).glob(f"TD3_{paper_env}_*.npy"))
        if not files:
            raise SystemExit(f"no TD3_{paper_env}_*.npy in {learning_curves / folder}")
        for path in files:
            seed = int(path.stem.rsplit("_", 1)[1])
            for index, value in enumerate(np.load(path)):
                rows.append({"env_id": env_id, "paper_env": paper_env, "seed": seed,
                             "step": index * PAPER_EVAL_EVERY, "return": float(value)})
    return rows


def paper_curves(rows: list) -> dict:
    """env_id -> (steps (n,), returns (seeds, n)) from the CSV's rows."""
    curves = {}
    for env_id in ENVS.values():
        by_seed = {}
        for row in rows:
            if row["env_id"] == env_id:
                by_seed.setdefault(int(row["seed"]), []).append((int(row["step"]), float(row["return"])))
        if by_seed:
            points = [sorted(seed_points) for _, seed_points in sorted(by_seed.items())]
            curves[env_id] = (np.array([step for step, _ in points[0]]),
                              np.array([[value for _, value in seed_points] for seed_points in points]))
    return curves


def job_parts(job: str) -> tuple:
    """benchmarks/run.py's job name "td3__Hopper-v5__1M-steps" -> ("td3", "Hopper-v5", "1M-steps")."""
    script, env_id, variant = (job.split("__", 2) + ["", ""])[:3]
    return script, env_id, variant


def our_curves(results_dir: Path, logs_dir: Optional[Path]) -> dict:
    """env_id -> {(run label, seed): (steps, running-mean returns)}: the suite's finished td3.py runs from
    full_curves.csv, then the runs in logs_dir that have not finished (no summary.json yet)."""
    curves = {}
    for point in read_csv(results_dir / "full_curves.csv"):
        script, env_id, variant = job_parts(point["job"])
        if script == "td3" and env_id in ENVS.values():
            steps, returns = curves.setdefault(env_id, {}).setdefault((variant, int(point["seed"])), ([], []))
            steps.append(float(point["step"]))
            returns.append(float(point["return"]))
    curves = {env: {key: (np.array(s), np.array(r)) for key, (s, r) in runs.items()} for env, runs in curves.items()}
    for episodes_csv in sorted(logs_dir.glob("*/td3__*/seed*/runs/*/episodes.csv")) if logs_dir else []:
        if (episodes_csv.parent / "summary.json").exists():
            continue  # finished: its curve is in full_curves.csv, drawn to the job's whole budget
        _, env_id, variant = job_parts(episodes_csv.parents[3].name)  # the glob matched td3 jobs only
        episodes = read_csv(episodes_csv)
        if env_id not in ENVS.values() or len(episodes) < 10:
            continue
        steps = np.array([float(row["global_step"]) for row in episodes])
        returns = np.array([float(row["episode_return"]) for row in episodes])
        grid, values = learning_curve(steps, returns, int(steps[-1]))  # drawn only as far as the run has come
        curves.setdefault(env_id, {})[(variant, int(episodes_csv.parents[2].name[len("seed"):]))] = (grid, values)
    return curves


def final_evaluations(results_dir: Path) -> dict:
    """env_id -> [(variant, seed, total steps, deterministic evaluation)] of the suite's finished td3.py runs."""
    evaluations = {}
    for row in read_csv(results_dir / "full.csv"):
        if row["script"] == "td3.py" and row["env_id"] in ENVS.values():
            evaluations.setdefault(row["env_id"], []).append(
                (row["variant"], int(row["seed"]), int(float(row["global_step"])), float(row["eval_return_mean"])))
    return evaluations


def paper_at(paper_steps: np.ndarray, paper_returns: np.ndarray, step: int) -> Optional[str]:
    """The paper's evaluations at step as "mean [min, max]" over its seeds; None where it has none."""
    if step not in paper_steps:
        return None
    column = paper_returns[:, np.searchsorted(paper_steps, step)]  # (seeds,)
    return f"{column.mean():,.0f} [{column.min():,.0f}, {column.max():,.0f}]"


def evaluation_table(paper: dict, evaluations: dict) -> list:
    """Markdown lines: each finished run's final deterministic evaluation beside the paper's at that step."""
    lines = ["| env | td3.py run | seed | steps | td3.py: final deterministic evaluation (10 episodes) | TD3 paper "
             "at that step: mean [min, max] |", "|---|---|---|---|---|---|"]
    for env_id, (paper_steps, paper_returns) in paper.items():
        for variant, seed, step, evaluation in sorted(evaluations.get(env_id, [])):
            reference = paper_at(paper_steps, paper_returns, step) or "—"
            lines.append(f"| {env_id} | {variant} | {seed} | {step:,} | {evaluation:,.0f} | {reference} |")
    return lines


def value_at(steps: np.ndarray, returns: np.ndarray, step: float) -> Optional[float]:
    """The curve's value at step, None where the curve does not reach it."""
    if step < steps[0] or step > steps[-1]:
        return None
    return float(np.interp(step, steps, returns))


def table(paper: dict, ours: dict) -> list:
    """Markdown lines: per env and step, the paper's mean [min, max] over its seeds and each of our runs."""
    lines = ["| env | step | TD3 paper: deterministic evaluation, mean [min, max] over its seeds | td3.py: training "
             "episodes (running mean), per run |", "|---|---|---|---|"]
    for env_id, (paper_steps, paper_returns) in paper.items():
        for step in TABLE_STEPS:
            reference = paper_at(paper_steps, paper_returns, step)
            if reference is None:
                continue
            ours_here = [f"{variant or 'run'} s{seed}: {value:,.0f}"
                         for (variant, seed), (steps, returns) in sorted(ours.get(env_id, {}).items())
                         if (value := value_at(steps, returns, step)) is not None]
            lines.append(f"| {env_id} | {step:,} | {reference} | {'; '.join(ours_here) or '—'} |")
    return lines


def plot(paper: dict, ours: dict, evaluations: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, all_axes = plt.subplots(1, len(paper), figsize=(5 * len(paper), 4), squeeze=False)
    for axes, (env_id, (paper_steps, paper_returns)) in zip(all_axes[0], paper.items()):
        axes.plot(paper_steps, paper_returns.mean(0), color="black",
                          label=f"TD3 paper ({len(paper_returns)} seeds, v1, deterministic eval)")
        axes.fill_between(paper_steps, paper_returns.min(0), paper_returns.max(0), color="black", alpha=0.12)
        for (variant, seed), (steps, returns) in sorted(ours.get(env_id, {}).items()):
            axes.plot(steps, returns, label=f"td3.py {variant or ''} seed {seed} (training episodes)")
        if evaluations.get(env_id):
            axes.scatter([step for _, _, step, _ in evaluations[env_id]],
                         [evaluation for *_, evaluation in evaluations[env_id]], marker="x", color="tab:red", zorder=3,
                         label="td3.py final deterministic eval")
        axes.set(title=f"{env_id} (paper: {env_id.replace('-v5', '-v1')})", xlabel="environment steps",
                 ylabel="episode return")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(command: Union[Import, Plot]) -> int:
    if isinstance(command, Import):
        rows = import_curves(Path(command.learning_curves).expanduser())
        write_csv(Path(command.out), rows, ["env_id", "paper_env", "seed", "step", "return"])
        print(f"{len(rows)} evaluations written to {command.out}")
        return 0
    paper = paper_curves(read_csv(Path(command.paper)))
    if not paper:
        raise SystemExit(f"no paper curves in {command.paper}: run the import command first")
    results_dir = Path(command.results_dir)
    ours = our_curves(results_dir, Path(command.logs_dir).expanduser() if command.logs_dir else None)
    evaluations = final_evaluations(results_dir)
    plot(paper, ours, evaluations, Path(command.out))
    lines = table(paper, ours) + [""] + evaluation_table(paper, evaluations)
    print("\n".join(lines))
    print(f"figure: {command.out}")
    if command.fragment:
        figure = Path(command.out).resolve()
        figure = figure.relative_to(ROOT) if figure.is_relative_to(ROOT) else figure
        runs = sum(len(runs) for runs in ours.values())
        fragment = [f"### td3.py beside the TD3 paper's curves ({runs} runs so far)", "",
                    "`python benchmarks/td3_paper_curves.py plot --logs-dir ~/lucidrl-logs` (its docstring: where "
                    "the paper's curves come from and how they were imported)", "",
                    f"![td3.py's training curves over the TD3 paper's evaluations]({figure})", "", *lines]
        Path(command.fragment).write_text("\n".join(fragment) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.extras.subcommand_cli_from_dict({"import": Import, "plot": Plot})))
