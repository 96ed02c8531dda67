"""algorithms/mcts.py beside OpenSpiel's MCTS, on this machine: strength (tic-tac-toe against perfect and random
play, Connect Four head to head) and speed (simulations per second against OpenSpiel's Python MCTS, and its
C++ MCTSBot for reference). Writes benchmarks/games/mcts.md and benchmarks/results/mcts_matches.json.

Every match alternates colours and gives both sides the same number of simulations, one random rollout per
leaf, UCT c = 2 and no solver (OpenSpiel's MCTSBot with RandomRolloutEvaluator(1)). Our rows run
algorithms/mcts.py through its command line (the command is in the table); OpenSpiel's rows play the same
perfect and random opponents, whose code is mcts.py's (importable: the script has no side effects).
The speed rows time searches from fixed positions, one implementation at a time: run this with the machine
otherwise idle (the match rows do not depend on load: every player is seeded).

    python benchmarks/games/mcts_matches.py            # about 15 minutes on 2 cores
    python benchmarks/games/mcts_matches.py connect_four   # only the Connect Four matches (no timing)
    python benchmarks/games/mcts_matches.py render         # the page again from the results file
"""

import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts as openspiel_python_mcts

ROOT = Path(__file__).resolve().parents[2]
PERFECT_BUDGETS = {10: 200, 100: 200, 1000: 200, 10000: 100}  # simulations per move -> games
RANDOM_BUDGET, RANDOM_GAMES = 1000, 200
CONNECT_FOUR_BUDGET = 1000
CONNECT_FOUR_MATCHES = ((1, 200), (2, 400))  # (seed, games): 600 games in all
SPEED_SEARCHES = {"tic_tac_toe": 20, "connect_four": 10}  # searches of 1,000 simulations from the opening
SPEED_REPEATS = 3  # the speed figure is the median of this many timings
UCT_C, SEED = 2.0, 1


def load_mcts():
    spec = importlib.util.spec_from_file_location("mcts", ROOT / "algorithms" / "mcts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mcts"] = module  # tyro (in the module's Args) reads docstrings through sys.modules
    spec.loader.exec_module(module)
    return module


def ours(game: str, opponent: str, simulations: int, games: int, seed: int = SEED) -> dict:
    """A match of algorithms/mcts.py, run through its command line; its summary.json plus the command."""
    command = ["python", "algorithms/mcts.py", "--game", game, "--opponent", opponent, "--num-simulations",
               str(simulations), "--num-games", str(games), "--seed", str(seed)]
    with tempfile.TemporaryDirectory() as workdir:
        subprocess.run([sys.executable, str(ROOT / command[1]), *command[2:]], cwd=workdir, check=True,
                       capture_output=True)
        summary = json.loads(next(Path(workdir).glob("runs/*/summary.json")).read_text())
    return {**summary, "command": " ".join(command)}


def openspiel(mcts, game_name: str, opponent_kind: str, simulations: int, games: int) -> dict:
    """The same match with OpenSpiel's C++ MCTSBot in our place."""
    game = pyspiel.load_game(game_name)
    bot = pyspiel.MCTSBot(game, pyspiel.RandomRolloutEvaluator(1, SEED), UCT_C, simulations, 1000, False, SEED, False)
    rng = random.Random(SEED)
    opponent = mcts.PerfectPlayer(game, SEED) if opponent_kind == "perfect" else \
        (lambda state: rng.choice(state.legal_actions()))
    outcomes = []
    for index in range(games):
        side = index % 2
        players = [bot.step, opponent] if side == 0 else [opponent, bot.step]
        outcome = mcts.play_game(game, players, rng)[0]
        outcomes.append(outcome if side == 0 else -outcome)
    return summarise(mcts, outcomes)


def summarise(mcts, outcomes: list) -> dict:
    counts = {"wins": sum(o > 0 for o in outcomes), "draws": sum(o == 0 for o in outcomes),
              "losses": sum(o < 0 for o in outcomes)}
    return {**counts, "games": len(outcomes),
            "loss_rate_ci95": mcts.wilson_interval(counts["losses"], len(outcomes)),
            "win_rate_ci95": mcts.wilson_interval(counts["wins"], len(outcomes))}


def simulations_per_second(search, game_name: str) -> float:
    """The median over SPEED_REPEATS of (searches x 1,000 simulations) / seconds, from the opening."""
    state = pyspiel.load_game(game_name).new_initial_state()
    rates = []
    for _ in range(SPEED_REPEATS):
        start = time.perf_counter()
        for _ in range(SPEED_SEARCHES[game_name]):
            search(state)
        rates.append(SPEED_SEARCHES[game_name] * 1000 / (time.perf_counter() - start))
    return float(np.median(rates))


def speed(mcts, game_name: str) -> dict:
    game = pyspiel.load_game(game_name)
    rng = random.Random(SEED)
    python_bot = openspiel_python_mcts.MCTSBot(
        game, UCT_C, 1000, openspiel_python_mcts.RandomRolloutEvaluator(1, np.random.RandomState(SEED)),
        solve=False, random_state=np.random.RandomState(SEED))
    cpp_bot = pyspiel.MCTSBot(game, pyspiel.RandomRolloutEvaluator(1, SEED), UCT_C, 1000, 1000, False, SEED, False)
    return {"ours": simulations_per_second(lambda state: mcts.search(state, 1000, UCT_C, rng), game_name),
            "openspiel_python": simulations_per_second(python_bot.mcts_search, game_name),
            "openspiel_cpp": simulations_per_second(cpp_bot.step, game_name)}


def wilson(counts: dict) -> tuple:
    """The 95% Wilson interval of the win rate (the formula of algorithms/mcts.py, which the tests check)."""
    return load_mcts().wilson_interval(counts["wins"], counts["games"])


def percent(count: int, games: int, interval) -> str:
    return f"{100 * count / games:.0f}% [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]"


def render(results: dict) -> str:
    lines = ["### Monte Carlo Tree Search (`algorithms/mcts.py`) beside OpenSpiel's MCTS", "",
             f"Measured {results['date']} on this machine ({results['machine']}), OpenSpiel {results['open_spiel']}, "
             "`python benchmarks/games/mcts_matches.py`. Both sides: UCT c = 2, one random rollout per leaf, "
             "no solver, colours alternating; 95% Wilson intervals in brackets.", "",
             "**Tic-tac-toe against a perfect player** (exhaustive minimax, a uniformly random choice among "
             "its optimal moves). Perfect play cannot be beaten, so the figure is the loss rate:", "",
             "| simulations per move | games | mcts.py loses | OpenSpiel MCTSBot loses | command |", "|---|---|---|---|---|"]
    for row in results["perfect"]:
        lines.append(f"| {row['simulations']:,} | {row['ours']['games']} | "
                     f"{percent(row['ours']['losses'], row['ours']['games'], row['ours']['loss_rate_ci95'])} | "
                     f"{percent(row['openspiel']['losses'], row['openspiel']['games'], row['openspiel']['loss_rate_ci95'])}"
                     f" | `{row['ours']['command']}` |")
    row = results["random"]
    lines += ["", f"**Tic-tac-toe against random play** at {RANDOM_BUDGET:,} simulations, {RANDOM_GAMES} games: "
              f"mcts.py wins {percent(row['ours']['wins'], row['ours']['games'], row['ours']['win_rate_ci95'])} and "
              f"loses {row['ours']['losses']}; OpenSpiel's MCTSBot wins "
              f"{percent(row['openspiel']['wins'], row['openspiel']['games'], row['openspiel']['win_rate_ci95'])} and "
              f"loses {row['openspiel']['losses']} (`{row['ours']['command']}`).", ""]
    rows = results["connect_four"]
    total = {key: sum(row[key] for row in rows) for key in ("wins", "draws", "losses", "games")}
    lines += [f"**Connect Four, mcts.py against OpenSpiel's MCTSBot**, {CONNECT_FOUR_BUDGET:,} simulations each, "
              f"{total['games']} games in {len(rows)} matches: {total['wins']} wins, {total['draws']} draws, "
              f"{total['losses']} losses; mcts.py wins {percent(total['wins'], total['games'], wilson(total))} of "
              f"the games (score {100 * (total['wins'] + 0.5 * total['draws']) / total['games']:.1f}% counting a "
              "draw as half). The matches:", ""]
    for row in rows:
        lines.append(f"- {row['games']} games: {row['wins']} wins, {row['draws']} draws, {row['losses']} losses, "
                     f"mcts.py wins {percent(row['wins'], row['games'], row['win_rate_ci95'])} (`{row['command']}`)")
    lines += ["",               "**Speed**: simulations per second of a 1,000-simulation search from the opening position, median "
              f"of {SPEED_REPEATS} timings, one implementation at a time, the machine otherwise idle:", "",
              "| game | mcts.py | OpenSpiel Python `mcts.MCTSBot` | ratio | OpenSpiel C++ `MCTSBot` (reference) |",
              "|---|---|---|---|---|"]
    for game_name, rates in results["speed"].items():
        lines.append(f"| {game_name} | {rates['ours']:,.0f} | {rates['openspiel_python']:,.0f} | "
                     f"{rates['ours'] / rates['openspiel_python']:.1f}× | {rates['openspiel_cpp']:,.0f} |")
    lines += ["", "Both Python searches spend most of their time in OpenSpiel's C++ game (clone, legal moves, "
              "apply); ours adds one node per simulation and scores only visited children, OpenSpiel's Python "
              "MCTS creates every child of a node when it expands it and scores them all at each visit.", ""]
    return "\n".join(lines)


def main() -> None:
    path = ROOT / "benchmarks" / "results" / "mcts_matches.json"
    if sys.argv[1:] in (["render"], ["connect_four"]):  # the page again, or only the Connect Four matches
        results = json.loads(path.read_text())
        if sys.argv[1] == "connect_four":
            results["connect_four"] = [ours("connect_four", "openspiel", CONNECT_FOUR_BUDGET, games, seed)
                                       for seed, games in CONNECT_FOUR_MATCHES]
        path.write_text(json.dumps(results, indent=2))
        (ROOT / "benchmarks" / "games" / "mcts.md").write_text(render(results))
        return
    mcts = load_mcts()
    results = {"date": time.strftime("%Y-%m-%d"), "open_spiel": mcts.version("open_spiel"), "machine": subprocess.run(
                   ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; nproc"], capture_output=True,
                   text=True).stdout.strip().replace("\n", ", ") + " cores"}
    results["speed"] = {game_name: speed(mcts, game_name) for game_name in SPEED_SEARCHES}
    print("speed", results["speed"], flush=True)
    results["perfect"] = []
    for simulations, games in PERFECT_BUDGETS.items():
        results["perfect"].append({"simulations": simulations,
                                   "ours": ours("tic_tac_toe", "perfect", simulations, games),
                                   "openspiel": openspiel(mcts, "tic_tac_toe", "perfect", simulations, games)})
        print("perfect", simulations, results["perfect"][-1]["ours"]["losses"],
              results["perfect"][-1]["openspiel"]["losses"], flush=True)
    results["random"] = {"ours": ours("tic_tac_toe", "random", RANDOM_BUDGET, RANDOM_GAMES),
                         "openspiel": openspiel(mcts, "tic_tac_toe", "random", RANDOM_BUDGET, RANDOM_GAMES)}
    results["connect_four"] = [ours("connect_four", "openspiel", CONNECT_FOUR_BUDGET, games, seed)
                               for seed, games in CONNECT_FOUR_MATCHES]
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    (ROOT / "benchmarks" / "games" / "mcts.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
