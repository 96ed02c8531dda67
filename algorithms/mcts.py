"""Monte Carlo Tree Search with UCT and random rollouts (Kocsis & Szepesvari 2006; Browne et al. 2012).

Each simulation walks down the search tree from the current position, choosing at every node the child
with the highest UCB1 score Q + c sqrt(ln N / n) (Eq. 1 of Kocsis & Szepesvari 2006; Section 3.3 of
Browne et al.), adds one new node (expansion), plays uniformly random moves from it to the end of the
game (the rollout), and adds the outcome to every node on its path (backup). After all simulations it
plays the most visited move. Values are kept from player 0's view and read with the sign of the player
to move, so the same tree serves both players of a zero-sum game.
Papers: https://doi.org/10.1007/11871842_29 and https://doi.org/10.1109/TCIAIG.2012.2186810.

Games come from OpenSpiel (https://github.com/google-deepmind/open_spiel): any two-player, zero-sum,
perfect-information, turn-taking game (chance moves, as in backgammon, are sampled). A run plays matches
against an opponent, colours alternating, and writes games.csv (one row per game) and summary.json with
the win/draw/loss rates and their 95% Wilson intervals. Opponents: `random`, `openspiel` (OpenSpiel's
C++ MCTSBot with one random rollout per leaf, at the same --num-simulations and --uct-c: the
side-by-side reference), `mcts` (itself, on its own random stream) and `perfect` (exhaustive minimax,
for games small enough to solve, such as tic-tac-toe).

    python algorithms/mcts.py --game tic_tac_toe --opponent perfect --num-simulations 1000
    python algorithms/mcts.py --game connect_four --opponent openspiel --num-games 200 --num-simulations 400
    python algorithms/mcts.py --game connect_four --play first     # you play it in the terminal
"""

import difflib
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Literal, Optional

import numpy as np
import pyspiel
import tyro

Z_95 = 1.959964  # the normal quantile of the 95% Wilson interval
MAX_SOLVED_STATES = 1_000_000  # --opponent perfect gives up on games with more positions than this
OPENSPIEL_MAX_MEMORY_MB = 1000  # MCTSBot's tree size limit (never reached at these budgets)


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of the search's rollouts and the opponent's choices"""
    track: bool = False
    """log to Weights & Biases"""
    tensorboard: bool = False
    """write the same figures as TensorBoard event files into the run directory (needs torch)"""
    wandb_project_name: str = "lucidrl"
    """the W&B project"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    game: str = "tic_tac_toe"
    """an OpenSpiel game, with parameters if any: tic_tac_toe, connect_four, "hex(board_size=5)", ..."""
    num_simulations: int = 1000
    """simulations (selection, expansion, one rollout, backup) per move"""
    uct_c: float = 2.0
    """the exploration constant c of UCB1 (OpenSpiel's MCTSBot default; outcomes lie in [-1, 1])"""
    opponent: Literal["random", "openspiel", "mcts", "perfect"] = "random"
    """who MCTS plays the matches against"""
    num_games: int = 100
    """games in the match; MCTS moves first in the even-numbered ones"""
    play: Optional[Literal["first", "second"]] = None
    """play one game against MCTS in the terminal instead of a match, moving first or second"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Game
def load_game(name: str):
    """The OpenSpiel game, or exit 2 with one line. OpenSpiel's C++ writes its own message to stderr
    before raising, so that stream is silenced while it loads."""
    base_name = name.split("(")[0]
    if base_name not in pyspiel.registered_names():
        close = difflib.get_close_matches(base_name, pyspiel.registered_names(), n=1)
        fail(f"--game: unknown OpenSpiel game '{base_name}'." + (f" Did you mean {close[0]}?" if close else ""))
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            game = pyspiel.load_game(name)
    except pyspiel.SpielError as error:
        game = str(error)
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    if isinstance(game, str):
        fail(f"--game {name}: {game.splitlines()[0]}")
    kind = game.get_type()
    wrong = [what for what, ok in (
        ("two players", game.num_players() == 2),
        ("zero-sum outcomes", kind.utility == pyspiel.GameType.Utility.ZERO_SUM),
        ("perfect information", kind.information == pyspiel.GameType.Information.PERFECT_INFORMATION),
        ("turn-taking moves", kind.dynamics == pyspiel.GameType.Dynamics.SEQUENTIAL)) if not ok]
    if wrong:
        fail(f"mcts.py needs a two-player, zero-sum, perfect-information, turn-taking game; {name} lacks "
             f"{' and '.join(wrong)}. Try tic_tac_toe, connect_four or another such OpenSpiel game.")
    return game


def sample_chance_outcome(state, rng: random.Random) -> int:
    """A chance node's outcome drawn with its probabilities (dice in backgammon, say)."""
    outcomes, probabilities = zip(*state.chance_outcomes())
    return rng.choices(outcomes, weights=probabilities)[0]


# ---------------------------------------------------------------------------------------- Search
class Node:
    """One position of the search tree. value_sum adds up the outcomes for player 0 of the simulations
    that passed through it; the player who chose the move into it reads them with their own sign."""

    __slots__ = ("visits", "value_sum", "children", "untried_actions", "sign")

    def __init__(self, state, rng: random.Random):
        self.visits, self.value_sum = 0, 0.0
        self.children = {}  # action -> Node
        # +1 if player 0 moves here, -1 if player 1 does, 0 at a chance node or the end of the game
        self.sign = {0: 1, 1: -1}.get(state.current_player(), 0)
        self.untried_actions = []  # expansion takes them in a random order
        if self.sign != 0:
            self.untried_actions = state.legal_actions()
            rng.shuffle(self.untried_actions)


def ucb_score(child: Node, parent_visits: int, parent_sign: int, uct_c: float) -> float:
    """UCB1: the child's mean outcome for the player choosing at the parent, plus the exploration bonus
    c sqrt(ln N / n) (Kocsis & Szepesvari 2006, Eq. 1). Only visited children are scored: a node
    expands all its moves before it selects among them."""
    return parent_sign * child.value_sum / child.visits + uct_c * math.sqrt(math.log(parent_visits) / child.visits)


def random_rollout(state, rng: random.Random) -> float:
    """Uniformly random moves (and sampled chance outcomes) to the end; the outcome for player 0.
    The state is played forward in place."""
    while not state.is_terminal():
        if state.is_chance_node():
            state.apply_action(sample_chance_outcome(state, rng))
        else:
            state.apply_action(rng.choice(state.legal_actions()))
    return state.returns()[0]


def backup(path: list, outcome: float) -> None:
    """Every node the simulation passed through counts one more visit and the outcome for player 0."""
    for node in path:
        node.visits += 1
        node.value_sum += outcome


def search(state, num_simulations: int, uct_c: float, rng: random.Random) -> Node:
    """Run the simulations from `state` (left unchanged) and return the root of the tree they grew."""
    root = Node(state, rng)
    for _ in range(num_simulations):
        node, path, working_state = root, [root], state.clone()
        while not working_state.is_terminal():  # 1. selection, down to a node not yet in the tree
            if working_state.is_chance_node():
                action = sample_chance_outcome(working_state, rng)
            elif node.untried_actions:
                action = node.untried_actions.pop()
            else:
                action = max(node.children, key=lambda move: ucb_score(node.children[move], node.visits,
                                                                       node.sign, uct_c))
            working_state.apply_action(action)
            child = node.children.get(action)
            if child is None:  # 2. expansion: one new node per simulation
                child = node.children[action] = Node(working_state, rng)
                path.append(child)
                break
            node = child
            path.append(node)
        outcome = random_rollout(working_state, rng)  # 3. evaluation (at the end of the game: its result)
        backup(path, outcome)  # 4. backup
    return root


def best_action(root: Node) -> int:
    """The most visited move (robust to a lucky high mean of a rarely tried move); ties go to the
    higher mean for the player to move."""
    return max(root.children, key=lambda action: (root.children[action].visits,
                                                   root.sign * root.children[action].value_sum))


# ---------------------------------------------------------------------------------------- Players
class MctsPlayer:
    """A player: state -> action. Counts its simulations and thinking time for the speed figure."""

    def __init__(self, args: Args, seed: int):
        self.num_simulations, self.uct_c, self.rng = args.num_simulations, args.uct_c, random.Random(seed)
        self.simulations, self.seconds = 0, 0.0

    def __call__(self, state) -> int:
        start = time.perf_counter()
        action = best_action(search(state, self.num_simulations, self.uct_c, self.rng))
        self.seconds += time.perf_counter() - start
        self.simulations += self.num_simulations
        return action


class RepeatedPosition(Exception):
    """solve() reached a position it is still solving: the game can come back to a position (pig: both
    players roll a 1), so a minimax value by recursion over positions does not exist."""


def solve(state, values: dict, open_positions: Optional[set] = None) -> float:
    """Minimax value for player 0 of every position reachable from `state`, memoised in `values` by
    position (history-independent: tic-tac-toe has 5,478 positions, 549,946 move sequences).
    open_positions: the positions on the path being solved, to detect a game that repeats one."""
    open_positions = set() if open_positions is None else open_positions
    key = f"{state}|{state.current_player()}"
    if key in open_positions:
        raise RepeatedPosition
    if key not in values:
        if len(values) >= MAX_SOLVED_STATES:
            raise OverflowError
        open_positions.add(key)
        if state.is_terminal():
            values[key] = state.returns()[0]
        elif state.is_chance_node():
            values[key] = sum(p * solve(state.child(a), values, open_positions) for a, p in state.chance_outcomes())
        else:
            child_values = [solve(state.child(action), values, open_positions) for action in state.legal_actions()]
            values[key] = max(child_values) if state.current_player() == 0 else min(child_values)
        open_positions.discard(key)
    return values[key]


class PerfectPlayer:
    """Plays a move of optimal minimax value, chosen uniformly among the optimal ones."""

    def __init__(self, game, seed: int):
        self.values, self.rng = {}, random.Random(seed)
        try:
            solve(game.new_initial_state(), self.values)
        except OverflowError:
            fail(f"--opponent perfect solves the game exhaustively; {game} has more than "
                 f"{MAX_SOLVED_STATES:,} positions. Try tic_tac_toe or a small board.")
        except RepeatedPosition:
            fail(f"--opponent perfect solves the game by minimax over its positions; {game} can repeat a "
                 f"position, where that has no answer. Try tic_tac_toe or a small board.")
        except RecursionError:
            fail(f"--opponent perfect solves the game by recursion; {game}'s games run deeper than Python's "
                 f"recursion limit ({sys.getrecursionlimit()}). Try tic_tac_toe or a small board.")

    def __call__(self, state) -> int:
        sign = 1 if state.current_player() == 0 else -1
        values = {action: sign * solve(state.child(action), self.values) for action in state.legal_actions()}
        best = max(values.values())
        return self.rng.choice([action for action, value in values.items() if value == best])


def make_opponent(args: Args, game, seed: int):
    if args.opponent == "random":
        rng = random.Random(seed)
        return lambda state: rng.choice(state.legal_actions())
    if args.opponent == "mcts":
        return MctsPlayer(args, seed)
    if args.opponent == "perfect":
        return PerfectPlayer(game, seed)
    evaluator = pyspiel.RandomRolloutEvaluator(1, seed)  # one random rollout per leaf, as ours
    bot = pyspiel.MCTSBot(game, evaluator, args.uct_c, args.num_simulations, OPENSPIEL_MAX_MEMORY_MB,
                          False, seed, False)  # no solver, not verbose
    return bot.step


def play_game(game, players: list, rng: random.Random) -> tuple:
    """One game; players[p] moves for player p. Returns (outcome for player 0, number of moves, the
    final state)."""
    state, moves = game.new_initial_state(), 0
    while not state.is_terminal():
        if state.is_chance_node():
            state.apply_action(sample_chance_outcome(state, rng))
        else:
            state.apply_action(players[state.current_player()](state))
            moves += 1
    return state.returns()[0], moves, state


def wilson_interval(successes: int, trials: int) -> tuple:
    """The 95% Wilson score interval of a rate (sound at 0% and 100%, unlike the normal approximation)."""
    rate, z2 = successes / trials, Z_95**2
    centre = (rate + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z_95 * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials**2)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def human_player(state) -> int:
    """Asks for a move (its number or its name) until it gets a legal one; EOF ends the game."""
    legal = {str(action): action for action in state.legal_actions()}
    legal.update({state.action_to_string(state.current_player(), action): action for action in state.legal_actions()})
    print(state, "\nYour move:", ", ".join(f"{action} ({state.action_to_string(state.current_player(), action)})"
                                           for action in state.legal_actions()))
    while True:
        answer = input("> ").strip()
        if answer in legal:
            return legal[answer]
        print(f"'{answer}' is not a legal move here; type one of the numbers or names above.")


def play_against_human(args: Args, game) -> None:
    players = [MctsPlayer(args, args.seed), MctsPlayer(args, args.seed)]
    players[0 if args.play == "first" else 1] = human_player
    try:
        outcome, _, final_state = play_game(game, players, random.Random(args.seed))
    except (KeyboardInterrupt, EOFError):  # Ctrl-C or the end of the input ends the game, not the program
        print("\nGame ended.")
        return
    yours = outcome if args.play == "first" else -outcome
    print(final_state, f"\n{'You win' if yours > 0 else 'MCTS wins' if yours < 0 else 'Draw'} (your outcome {yours:+g}).")


# ---------------------------------------------------------------------------------------- Logging
class FigureLog:
    """Sends the run's figures to Weights & Biases (--track) and/or TensorBoard (--tensorboard); both
    are imported only when asked for (they are slow to import and optional)."""

    def __init__(self, args: Args, run_name: str, run_dir: str):
        self.wandb = self.writer = None
        if args.track:
            import wandb

            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name,
                       config=vars(args), dir=run_dir)
            self.wandb = wandb
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(run_dir)  # the arguments are in summary.json beside it

    def log(self, figures: dict, step: int) -> None:
        if self.wandb is not None:
            self.wandb.log(figures, step=step)
        if self.writer is not None:
            for name, value in figures.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------------- Train
def check_args(args: Args) -> None:
    """Arguments that cannot work: one line naming the argument and its allowed range, exit 2."""
    for valid, message in (
            (0 <= args.seed <= 2**32 - 1, f"--seed must be in [0, 2**32 - 1]; got {args.seed}"),  # as every script's
            (args.num_simulations >= 1, f"--num-simulations must be >= 1; got {args.num_simulations}"),
            (0 <= args.uct_c < math.inf, f"--uct-c must be >= 0 and finite; got {args.uct_c}"),
            (args.num_games >= 1, f"--num-games must be >= 1; got {args.num_games}")):
        if not valid:
            fail(message)


def train(args: Args) -> dict:
    """Plays the match (search needs no training: the name keeps every script's entry point)."""
    check_args(args)
    game = load_game(args.game)
    if args.play is not None:
        return play_against_human(args, game)
    # three independent streams; below 2^31, since OpenSpiel's C++ bots take a signed 32-bit seed
    mcts_seed, opponent_seed, chance_seed = (np.random.SeedSequence(args.seed).generate_state(3) % 2**31).tolist()
    mcts_player, opponent = MctsPlayer(args, mcts_seed), make_opponent(args, game, opponent_seed)
    chance_rng = random.Random(chance_seed)
    run_name = f"{args.game}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    figure_log = FigureLog(args, run_name, run_dir)
    games_file = open(os.path.join(run_dir, "games.csv"), "w")
    games_file.write("game,mcts_player,outcome,moves,wall_time\n")
    start_time, last_print, outcomes = time.time(), 0.0, []
    try:
        for game_index in range(args.num_games):
            mcts_side = game_index % 2  # colours alternate
            players = [mcts_player, opponent] if mcts_side == 0 else [opponent, mcts_player]
            outcome_player0, moves, _ = play_game(game, players, chance_rng)
            outcome = outcome_player0 if mcts_side == 0 else -outcome_player0  # MCTS's view
            outcomes.append(outcome)
            games_file.write(f"{game_index},{mcts_side},{outcome:g},{moves},{time.time() - start_time:.2f}\n")
            games_file.flush()
            sims_per_second = mcts_player.simulations / max(mcts_player.seconds, 1e-9)
            figure_log.log({"charts/outcome": outcome, "charts/win_rate": np.mean(np.array(outcomes) > 0),
                            "charts/loss_rate": np.mean(np.array(outcomes) < 0), "charts/SPS": sims_per_second},
                           step=game_index + 1)
            if time.time() - last_print > 5:
                last_print = time.time()
                print(f"game {game_index + 1}/{args.num_games} | wins {sum(o > 0 for o in outcomes)} draws "
                      f"{sum(o == 0 for o in outcomes)} losses {sum(o < 0 for o in outcomes)} | "
                      f"{sims_per_second:,.0f} simulations/s", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {len(outcomes)} games; the summary covers those")
    games_file.close()
    wall_time = time.time() - start_time
    summary = {"args": vars(args), "games": len(outcomes), "wall_time": wall_time,
               "sps": mcts_player.simulations / max(mcts_player.seconds, 1e-9),  # simulations per second
               "versions": {"python": platform.python_version(), "numpy": np.__version__,
                            "open_spiel": version("open_spiel")}}
    for name, plural, counted in (("win", "wins", lambda o: o > 0), ("draw", "draws", lambda o: o == 0),
                                  ("loss", "losses", lambda o: o < 0)):
        count = sum(map(counted, outcomes))
        summary[plural] = count
        summary[f"{name}_rate"] = count / max(len(outcomes), 1)
        summary[f"{name}_rate_ci95"] = wilson_interval(count, len(outcomes)) if outcomes else None
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.close()
    print(f"{run_name}: {summary['wins']} wins, {summary['draws']} draws, {summary['losses']} losses in "
          f"{len(outcomes)} games against {args.opponent} | win rate {summary['win_rate']:.1%} | loss rate "
          f"{summary['loss_rate']:.1%} | {summary['sps']:,.0f} simulations/s | {wall_time:.1f}s")
    return {"run_dir": run_dir, "outcomes": outcomes, **summary}


if __name__ == "__main__":
    train(tyro.cli(Args))
