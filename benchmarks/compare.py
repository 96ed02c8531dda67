"""Speed side by side: each LucidRL deep script beside its peer (CleanRL, Stable-Baselines3) on this machine.

Every pair runs the two implementations at identical hyperparameters and budget, seed 1, one process at a
time, each only once the machine is idle (it waits, and says so, while anything else uses the CPUs). For each
run it records:

- *learning steps/s*: environment steps per second between the first and the last training episode that end
  after the warm-up (`learning_starts`); off-policy scripts pay one gradient update per step there. Read from
  the episode ends each program reports (LucidRL's episodes.csv wall_time column; the peer's
  `global_step=N, episodic_return=R` lines, time-stamped as they arrive through an unbuffered pipe);
- *whole-run steps/s*: the program's own figure for its training loop (LucidRL's summary.json `sps`; the
  peer's last `SPS:` line);
- *wall*: seconds from process start to exit (interpreter start, imports, training and LucidRL's final
  evaluation, which the peers do not run);
- *peak memory*: the process's maximum resident set size;
- *return*: the mean of the last 10 training episodes (same definition on both sides).

The table goes to benchmarks/results/compare.csv and compare.md; benchmarks.md includes compare.md (the suite's
appendix) and is re-rendered at the end. Ratios are LucidRL / peer.

Set-up of the peers (once, outside the repository; the paths are flags):

    # CleanRL, commit fe8d8a0, in its own virtualenv (it needs gymnasium 0.29; Hopper is v4 there)
    git clone https://github.com/vwxyzjn/cleanrl ~/cleanrl && git -C ~/cleanrl checkout fe8d8a0
    python3.11 -m venv ~/venvs/cleanrl
    ~/venvs/cleanrl/bin/pip install torch==2.13.0 "gymnasium[classic-control,mujoco]==0.29.1" mujoco==2.3.3 \\
        "numpy<2" tyro tensorboard
    # Stable-Baselines3 and sb3-contrib beside gymnasium 1.4 (see benchmarks/peers/sb3_peer.py)
    python3.11 -m venv ~/venvs/sb3
    ~/venvs/sb3/bin/pip install torch==2.13.0 "gymnasium[classic-control,mujoco]==1.4.0" numpy==2.4.6 \\
        stable-baselines3==2.9.2 sb3-contrib==2.9.2

Run (all pairs, one run a side, take about 45 minutes on 2 cores; `--pairs` picks some, `--only lucidrl` reruns our side):

    python benchmarks/compare.py
    python benchmarks/compare.py --pairs ppo-cartpole-cleanrl sac-pendulum-cleanrl --only lucidrl
    python benchmarks/compare.py --pairs ppo_continuous-hopper-cleanrl --seeds 1 2 3

Speed can depend on what a run learns: a Hopper that has learned to hop falls and resets less, and its
simulated steps measured cheaper (176 against 221 µs, benchmarks.md), so where one side's seed learns
faster than the other's, run the pair on several seeds (each figure is then the median over all of a
side's runs).

CleanRL's checkout root goes on PYTHONPATH (its off-policy scripts import cleanrl_utils.buffers); both peers
run unmodified, with torch's default thread count, as a user would run them.
"""

import csv
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import tyro

ROOT = Path(__file__).resolve().parent.parent
IDLE_BUSY_FRACTION = 0.10  # the machine counts as idle when under 10% of its CPU time is busy
IDLE_WAIT_REPORT_SECONDS = 30.0  # how often to say that we are still waiting for an idle machine
RETURN_WINDOW = 10  # the return column: mean of the last 10 training episodes
EPISODE_LINE = re.compile(r"global_step=(\d+), episodic_return=\[?\s*([-+0-9.eE]+)")
SPS_LINE = re.compile(r"^SPS:\s*(\d+)")
COLUMNS = ["pair", "script", "peer", "env_id", "steps", "side", "runs", "seeds", "learning_sps", "whole_sps", "wall_time",
           "peak_mb", "return_last10", "episodes", "date", "machine"]


@dataclass(frozen=True)
class Pair:
    name: str
    script: str  # algorithms/{script}
    peer: Literal["cleanrl", "sb3"]
    peer_target: str  # CleanRL: cleanrl/{file}; SB3: the algorithm name of benchmarks/peers/sb3_peer.py
    env_id: str
    peer_env_id: str
    total_timesteps: int
    learning_starts: int = 0
    lucid_args: tuple = ()  # settings given explicitly where the two defaults differ
    peer_args: tuple = ()


PAIRS = [
    Pair("dqn-cartpole-cleanrl", "dqn.py", "cleanrl", "dqn.py", "CartPole-v1", "CartPole-v1", 100_000, 10_000),
    Pair("ppo-cartpole-cleanrl", "ppo.py", "cleanrl", "ppo.py", "CartPole-v1", "CartPole-v1", 100_000),
    Pair("ppo_continuous-hopper-cleanrl", "ppo_continuous.py", "cleanrl", "ppo_continuous_action.py",
         "Hopper-v5", "Hopper-v4", 102_400),
    Pair("sac-pendulum-cleanrl", "sac.py", "cleanrl", "sac_continuous_action.py", "Pendulum-v1", "Pendulum-v1",
         15_000, 5_000, ("--learning-starts", "5000"), ("--learning-starts", "5000")),
    Pair("td3-pendulum-cleanrl", "td3.py", "cleanrl", "td3_continuous_action.py", "Pendulum-v1", "Pendulum-v1",
         15_000, 5_000, ("--learning-starts", "5000"), ("--learning-starts", "5000")),
    Pair("ddpg-pendulum-cleanrl", "ddpg.py", "cleanrl", "ddpg_continuous_action.py", "Pendulum-v1", "Pendulum-v1",
         15_000, 5_000, ("--learning-starts", "5000"), ("--learning-starts", "5000")),
    Pair("sac-hopper-cleanrl", "sac.py", "cleanrl", "sac_continuous_action.py", "Hopper-v5", "Hopper-v4",
         15_000, 5_000, ("--learning-starts", "5000"), ("--learning-starts", "5000")),
    Pair("dqn-cartpole-sb3", "dqn.py", "sb3", "dqn", "CartPole-v1", "CartPole-v1", 100_000, 10_000),
    Pair("ppo-cartpole-sb3", "ppo.py", "sb3", "ppo", "CartPole-v1", "CartPole-v1", 100_000),
    Pair("a2c-cartpole-sb3", "a2c.py", "sb3", "a2c", "CartPole-v1", "CartPole-v1", 100_000),
    Pair("ppo_continuous-hopper-sb3", "ppo_continuous.py", "sb3", "ppo_continuous", "Hopper-v5", "Hopper-v5",
         102_400),
    Pair("trpo-hopper-sb3", "trpo.py", "sb3", "trpo", "Hopper-v5", "Hopper-v5", 102_400),
    Pair("sac-pendulum-sb3", "sac.py", "sb3", "sac", "Pendulum-v1", "Pendulum-v1", 15_000, 5_000,
         ("--learning-starts", "5000")),
    Pair("td3-pendulum-sb3", "td3.py", "sb3", "td3", "Pendulum-v1", "Pendulum-v1", 15_000, 5_000,
         ("--learning-starts", "5000")),
    Pair("ddpg-pendulum-sb3", "ddpg.py", "sb3", "ddpg", "Pendulum-v1", "Pendulum-v1", 15_000, 5_000,
         ("--learning-starts", "5000")),
]


@dataclass
class Args:
    pairs: list[str] = field(default_factory=list)
    """names of the pairs to run (empty: all of them)"""
    only: Optional[Literal["lucidrl", "peer"]] = None
    """run only one side of each pair (the other side's last row stays)"""
    seeds: list[int] = field(default_factory=lambda: [1])
    """seeds of both sides: where a seed learns faster on one side its episodes, and so its steps, cost
    differently (fewer falls and resets), so a pair whose two sides learn apart is better run on several"""
    repeats: int = 1
    """runs of each side and seed, alternating (peer, LucidRL, peer, ...); the table shows each figure's
    median over all of a side's runs"""
    cleanrl_dir: str = "~/cleanrl"
    """a checkout of vwxyzjn/cleanrl (commit fe8d8a0)"""
    cleanrl_python: str = "~/venvs/cleanrl/bin/python"
    """the python of CleanRL's virtualenv"""
    sb3_python: str = "~/venvs/sb3/bin/python"
    """the python of the Stable-Baselines3 virtualenv"""
    results_dir: str = "benchmarks/results"
    """where the table's files go"""
    table_name: str = "compare"
    """the table's files are {table_name}.csv and .md (the GPU check writes compare_gpu: benchmarks/gpu_check.sh)"""
    render: bool = True
    """re-render benchmarks.md (benchmarks/run.py --render-only) at the end"""
    list_pairs: bool = False
    """print the pairs and exit"""


# ------------------------------------------------------------------------------------------ machine
def machine_name() -> str:
    model = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.split("\n") if shutil.which("nvidia-smi") else []
    return f"{model}, {os.cpu_count()} cores" + "".join(f", {gpu.strip()}" for gpu in gpus if gpu.strip())


def busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPUs' time spent busy over the next `seconds` (from /proc/stat)."""
    def read():
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total_before, idle_before = read()
    time.sleep(seconds)
    total_after, idle_after = read()
    return 1.0 - (idle_after - idle_before) / max(total_after - total_before, 1)


def wait_for_idle() -> None:
    if not os.path.exists("/proc/stat"):
        return
    last_report = 0.0
    while (busy := busy_fraction()) > IDLE_BUSY_FRACTION:
        if time.time() - last_report > IDLE_WAIT_REPORT_SECONDS:
            print(f"  waiting for an idle machine: {busy:.0%} of the CPUs busy", flush=True)
            last_report = time.time()


# ------------------------------------------------------------------------------------------ one run
def run_process(command: list, cwd: str, env: dict) -> dict:
    """Run to the end; returns the lines with their arrival times, wall time and peak memory (a
    non-zero exit raises, with the command's last lines)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    lines = []
    for line in process.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    _, status, usage = os.wait4(process.pid, 0)  # the rusage of this child alone
    wall_time = time.perf_counter() - start
    if (returncode := os.waitstatus_to_exitcode(status)) != 0:
        raise RuntimeError(f"{' '.join(command)} exited {returncode}:\n" + "\n".join(line for _, line in lines[-20:]))
    return {"lines": lines, "wall_time": wall_time, "peak_mb": usage.ru_maxrss / 1024}


def learning_rate(episodes: list, learning_starts: int) -> Optional[float]:
    """Steps per second between the first and the last episode end after the warm-up; episodes: (step, time)."""
    after = [(step, at) for step, at in episodes if step > learning_starts]
    if len(after) < 2 or after[-1][1] <= after[0][1]:
        return None
    return (after[-1][0] - after[0][0]) / (after[-1][1] - after[0][1])


def run_lucidrl(pair: Pair, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, str(ROOT / "algorithms" / pair.script), "--env-id", pair.env_id,
                   "--total-timesteps", str(pair.total_timesteps), "--seed", str(seed), *pair.lucid_args]
        result = run_process(command, workdir, dict(os.environ, PYTHONUNBUFFERED="1"))
        (run_dir,) = list(Path(workdir, "runs").iterdir())
        summary = json.loads((run_dir / "summary.json").read_text())
        with open(run_dir / "episodes.csv") as file:
            rows = list(csv.DictReader(file))
    episodes = [(int(row["global_step"]), float(row["wall_time"])) for row in rows]
    returns = [float(row["episode_return"]) for row in rows]
    return {"learning_sps": learning_rate(episodes, pair.learning_starts), "whole_sps": summary["sps"],
            "wall_time": result["wall_time"], "peak_mb": result["peak_mb"], "returns": returns}


def run_peer(pair: Pair, args: Args, seed: int) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if pair.peer == "cleanrl":
        cleanrl_dir = Path(args.cleanrl_dir).expanduser()
        command = [str(Path(args.cleanrl_python).expanduser()), str(cleanrl_dir / "cleanrl" / pair.peer_target),
                   "--env-id", pair.peer_env_id, "--total-timesteps", str(pair.total_timesteps),
                   "--seed", str(seed), *pair.peer_args]
        env["PYTHONPATH"] = str(cleanrl_dir)
    else:
        command = [str(Path(args.sb3_python).expanduser()), str(ROOT / "benchmarks" / "peers" / "sb3_peer.py"),
                   pair.peer_target, pair.peer_env_id, str(pair.total_timesteps), "--seed", str(seed),
                   "--learning-starts", str(pair.learning_starts), *pair.peer_args]
    with tempfile.TemporaryDirectory() as workdir:
        result = run_process(command, workdir, env)
    episodes, returns, whole_sps = [], [], None
    for at, line in result["lines"]:
        if match := EPISODE_LINE.search(line):
            episodes.append((int(match.group(1)), at))
            returns.append(float(match.group(2)))
        elif match := SPS_LINE.match(line):
            whole_sps = float(match.group(1))
    return {"learning_sps": learning_rate(episodes, pair.learning_starts), "whole_sps": whole_sps,
            "wall_time": result["wall_time"], "peak_mb": result["peak_mb"], "returns": returns}


# ------------------------------------------------------------------------------------------ table
def median(values: list) -> str:
    """The median as text ("" when a figure is missing in any run: e.g. too few episodes after the warm-up)."""
    if any(value is None for value in values):
        return ""
    ordered = sorted(values)
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return f"{value:.6g}"


def seeds_text(seeds: list) -> str:
    """"1", "1, 2, 5", or a run of consecutive seeds as "1–3"."""
    ordered = sorted(set(seeds))
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(map(str, ordered))


def read_rows(path: Path) -> dict:
    if not path.exists():
        return {}
    with open(path) as file:
        return {(row["pair"], row["side"]): row for row in csv.DictReader(file)}


def number(value: str, digits: int = 0) -> str:
    return "—" if value in ("", None) else f"{float(value):,.{digits}f}"


def ratio(ours: str, theirs: str) -> str:
    if ours in ("", None) or theirs in ("", None) or float(theirs) == 0:
        return "—"
    return f"**{float(ours) / float(theirs):.2f}×**"


def render_table(rows: dict) -> str:
    lines = [f"Measured by `python benchmarks/compare.py` (each row on the machine and day its last column names); "
             f"Python {platform.python_version()}. One process at a time on an idle "
             "machine, the same seeds (seed 1 unless the *runs* column names others), hyperparameters and budget "
             "on both sides; ratio = LucidRL / peer. "
             "*learning*: steps/s after the warm-up (every step pays for an update in the off-policy scripts); "
             "*whole*: each program's own steps/s for its training loop; *wall*: process start to exit "
             "(LucidRL's includes its final 10-episode evaluation); *peak*: maximum resident memory; *return*: "
             "mean of the last 10 training episodes. Each figure is the median over the runs of that side "
             "(the *runs* column). CleanRL runs Hopper-v4 (gymnasium 0.29, its pinned "
             "version), LucidRL and SB3 Hopper-v5.", "",
             "| pair | steps | runs | peer | learning steps/s (peer → LucidRL) | ratio | whole steps/s (peer → LucidRL) "
             "| ratio | wall s (peer / LucidRL) | peak MB (peer / LucidRL) | return (peer / LucidRL) | measured on |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair in PAIRS:
        ours, theirs = rows.get((pair.name, "lucidrl")), rows.get((pair.name, "peer"))
        if ours is None or theirs is None:
            continue
        peer = {"cleanrl": "CleanRL", "sb3": "SB3"}[pair.peer]
        # A ratio is a measurement only when both sides ran on one machine on one day (machines change
        # between sessions and their speed drifts): otherwise the row shows the figures and no ratio.
        side_by_side = (ours["machine"], ours["date"]) == (theirs["machine"], theirs["date"])
        pair_ratio = ratio if side_by_side else lambda *_: "— (not side by side)"
        seeds = ours.get("seeds") or "1"  # rows written before the seeds column ran seed 1
        runs = f"{theirs['runs']} / {ours['runs']}" + ("" if seeds == "1" else f", seeds {seeds}")
        measured_on = (f"{theirs['machine']}, {theirs['date']}" if side_by_side else
                       f"{theirs['machine']}, {theirs['date']} / {ours['machine']}, {ours['date']}")
        lines.append(
            f"| {pair.script} {pair.env_id} | {pair.total_timesteps:,} | {runs} | {peer} {pair.peer_target} | "
            f"{number(theirs['learning_sps'])} → {number(ours['learning_sps'])} | "
            f"{pair_ratio(ours['learning_sps'], theirs['learning_sps'])} | "
            f"{number(theirs['whole_sps'])} → {number(ours['whole_sps'])} | {pair_ratio(ours['whole_sps'], theirs['whole_sps'])} | "
            f"{number(theirs['wall_time'], 1)} / {number(ours['wall_time'], 1)} | "
            f"{number(theirs['peak_mb'])} / {number(ours['peak_mb'])} | "
            f"{number(theirs['return_last10'], 1)} / {number(ours['return_last10'], 1)} | {measured_on} |")
    return "\n".join(lines)


def main(args: Args) -> int:
    if args.list_pairs:
        for pair in PAIRS:
            print(f"{pair.name}: {pair.script} {pair.env_id} beside {pair.peer} {pair.peer_target}, "
                  f"{pair.total_timesteps:,} steps")
        return 0
    known = {pair.name for pair in PAIRS}
    if unknown := [name for name in args.pairs if name not in known]:
        print(f"unknown pair(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    if args.only != "lucidrl":
        missing = [path for path in (args.cleanrl_python, args.sb3_python, args.cleanrl_dir)
                   if not Path(path).expanduser().exists()]
        if missing:
            print(f"peer set-up missing: {', '.join(missing)} (see the set-up in this file's docstring)", file=sys.stderr)
            return 2
    results_dir = ROOT / args.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    csv_path, table_path = results_dir / f"{args.table_name}.csv", results_dir / f"{args.table_name}.md"
    rows = read_rows(csv_path)
    selected = [pair for pair in PAIRS if not args.pairs or pair.name in args.pairs]
    sides = ["peer", "lucidrl"] if args.only is None else [args.only]
    for pair in selected:
        results = {side: [] for side in sides}
        for repeat in range(args.repeats):
            for seed, side in itertools.product(args.seeds, sides):
                wait_for_idle()
                print(f"{pair.name}: {side}, seed {seed}, run {repeat + 1}/{args.repeats} ...", flush=True)
                result = run_lucidrl(pair, seed) if side == "lucidrl" else run_peer(pair, args, seed)
                returns = result.pop("returns")
                last = returns[-RETURN_WINDOW:]
                result["return_last10"] = sum(last) / max(len(last), 1)
                result["episodes"] = len(returns)
                print("  " + ", ".join(f"{key} {value:,.1f}" for key, value in result.items() if value is not None),
                      flush=True)
                results[side].append(result)
        for side, runs in results.items():
            rows[(pair.name, side)] = {
                "pair": pair.name, "script": pair.script, "peer": pair.peer, "env_id": pair.env_id,
                "steps": pair.total_timesteps, "side": side, "runs": len(runs), "seeds": seeds_text(args.seeds),
                **{key: median([run[key] for run in runs]) for key in runs[0]},
                "date": time.strftime("%Y-%m-%d"), "machine": machine_name()}
        with open(csv_path, "w", newline="") as file:  # after every pair: a killed comparison keeps its rows
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows.values())
    table = render_table(rows)
    table_path.write_text(table + "\n")
    print(table)
    if args.render:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--suite",
                        str(ROOT / "benchmarks" / "suites" / "full.toml"), "--render-only"], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
