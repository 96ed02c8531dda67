"""mcts.py: UCB1 and the backup by hand, the sign convention for both players, forced moves on tic-tac-toe
and Connect Four, the exhaustive perfect player against known game-theoretic facts, bad input, the
terminal game, and the bars against perfect and random play."""

import json
import math
import random
import signal
import subprocess
import sys
import time

import pyspiel
import pytest

from conftest import ALGORITHMS, load_module, read_summary, run_in_process, run_ok, sigint_as_in_a_terminal

mcts = load_module("mcts.py")
TIC_TAC_TOE = pyspiel.load_game("tic_tac_toe")
CONNECT_FOUR = pyspiel.load_game("connect_four")


def position(game, actions: list):
    state = game.new_initial_state()
    for action in actions:
        state.apply_action(action)
    return state


def test_ucb_score_by_hand():
    child = mcts.Node(position(TIC_TAC_TOE, [4]), random.Random(0))
    child.visits, child.value_sum = 4, 3.0  # player 0's outcomes: mean 0.75
    bonus = 2.0 * math.sqrt(math.log(10) / 4)
    assert mcts.ucb_score(child, 10, +1, 2.0) == pytest.approx(0.75 + bonus)
    assert mcts.ucb_score(child, 10, -1, 2.0) == pytest.approx(-0.75 + bonus)  # player 1 reads -0.75
    assert mcts.ucb_score(child, 10, -1, 0.0) == pytest.approx(-0.75)


def test_backup_adds_one_visit_and_player_0s_outcome_to_every_node_on_the_path():
    nodes = [mcts.Node(position(TIC_TAC_TOE, []), random.Random(0)) for _ in range(3)]
    mcts.backup(nodes, -1.0)
    mcts.backup(nodes[:2], 1.0)
    assert [(node.visits, node.value_sum) for node in nodes] == [(2, 0.0), (2, 0.0), (1, -1.0)]


def test_node_sign_is_the_player_to_move():
    assert mcts.Node(position(TIC_TAC_TOE, []), random.Random(0)).sign == 1
    assert mcts.Node(position(TIC_TAC_TOE, [4]), random.Random(0)).sign == -1
    assert mcts.Node(position(TIC_TAC_TOE, [0, 3, 1, 4, 2]), random.Random(0)).sign == 0  # x won: the end


@pytest.mark.parametrize("game, actions, expected, why", [
    (TIC_TAC_TOE, [0, 3, 1, 4], 2, "x wins in one (and must not merely block o at 5)"),
    (TIC_TAC_TOE, [0, 4, 8, 1], 7, "x must block o's column 1-4-7"),
    (TIC_TAC_TOE, [0, 3, 1, 4, 8], 5, "o wins in one (and must not merely block x at 2)"),
    (TIC_TAC_TOE, [0, 4, 1], 2, "o must block x's row 0-1-2"),
    (CONNECT_FOUR, [0, 6, 1, 6, 2, 6], 3, "x wins in one on the bottom row"),
    (CONNECT_FOUR, [0, 6, 1, 6, 2], 3, "o must block x's bottom row"),
])
def test_search_finds_the_forced_move_for_either_player(game, actions, expected, why):
    state = position(game, actions)
    root = mcts.search(state, 2000, 2.0, random.Random(1))
    assert mcts.best_action(root) == expected, why
    assert str(state) == str(position(game, actions)), "search must leave the state unchanged"
    assert root.visits == 2000 and sum(child.visits for child in root.children.values()) == 2000


def test_a_winning_move_is_stored_as_player_0s_loss_when_player_1_makes_it():
    """o (player 1) completes 3-4-5: every simulation through that child ends at once with -1 for
    player 0, which o reads with its sign as a sure win."""
    root = mcts.search(position(TIC_TAC_TOE, [0, 3, 1, 4, 8]), 500, 2.0, random.Random(0))
    winning = root.children[5]
    assert winning.value_sum == -winning.visits and root.sign * winning.value_sum / winning.visits == 1.0


def test_chance_games_are_searched_with_sampled_outcomes():
    """pig: a dice game, perfect information with chance nodes; search runs from a decision node."""
    game = pyspiel.load_game("pig(winscore=10)")
    state = game.new_initial_state()
    assert not state.is_chance_node()
    root = mcts.search(state, 200, 2.0, random.Random(0))
    assert root.visits == 200 and mcts.best_action(root) in state.legal_actions()


def outcome_distribution(state, memo: dict) -> tuple:
    """(P first wins, P second wins, P draw) under uniformly random play, exactly."""
    key = str(state)
    if key not in memo:
        if state.is_terminal():
            memo[key] = (float(state.returns()[0] > 0), float(state.returns()[0] < 0), float(state.returns()[0] == 0))
        else:
            children = [outcome_distribution(state.child(action), memo) for action in state.legal_actions()]
            memo[key] = tuple(sum(column) / len(children) for column in zip(*children))
    return memo[key]


def test_tic_tac_toe_rules_give_the_known_random_play_outcomes():
    first, second, draw = outcome_distribution(TIC_TAC_TOE.new_initial_state(), {})
    assert (round(100 * first, 1), round(100 * second, 1), round(100 * draw, 1)) == (58.5, 28.8, 12.7)


def test_perfect_player_knows_tic_tac_toe():
    """5,478 legal positions; the game is a draw; after a corner opening, o's centre is its only
    non-losing reply (every other reply loses to perfect play)."""
    player = mcts.PerfectPlayer(TIC_TAC_TOE, seed=0)
    assert len(player.values) == 5478
    assert mcts.solve(TIC_TAC_TOE.new_initial_state(), player.values) == 0
    corner = position(TIC_TAC_TOE, [0])
    replies = {action: mcts.solve(corner.child(action), player.values) for action in corner.legal_actions()}
    assert replies == {action: (0.0 if action == 4 else 1.0) for action in corner.legal_actions()}
    assert player(corner) == 4
    # it never loses, draws itself, and beats random play most of the time
    rng = random.Random(0)
    random_player = lambda state: rng.choice(state.legal_actions())  # noqa: E731
    perfect_vs_perfect = [mcts.play_game(TIC_TAC_TOE, [player, player], rng)[0] for _ in range(20)]
    assert perfect_vs_perfect == [0.0] * 20
    as_first = [mcts.play_game(TIC_TAC_TOE, [player, random_player], rng)[0] for _ in range(100)]
    as_second = [-mcts.play_game(TIC_TAC_TOE, [random_player, player], rng)[0] for _ in range(100)]
    assert min(as_first + as_second) == 0 and sum(o > 0 for o in as_first) > 85


def test_wilson_interval():
    low, high = mcts.wilson_interval(0, 100)
    assert low == 0 and high == pytest.approx(0.0370, abs=1e-4)
    low, high = mcts.wilson_interval(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))


@pytest.mark.parametrize("flags, named", [
    (["--game", "tic_tac_to"], "Did you mean tic_tac_toe?"),
    (["--game", "connect_four(rows=x)"], "--game connect_four(rows=x)"),
    (["--game", "kuhn_poker"], "lacks perfect information"),
    (["--game", "matrix_rps"], "turn-taking"),
    (["--game", "connect_four", "--opponent", "perfect"], "--opponent perfect"),
    (["--game", "pig(winscore=5)", "--opponent", "perfect"], "can repeat a position"),  # both roll a 1: back again
    (["--num-simulations", "0"], "--num-simulations"),
    (["--uct-c", "-1"], "--uct-c"),
    (["--num-games", "0"], "--num-games"),
])
def test_bad_input_exits_2_with_one_line(flags, named, in_tmp, capsys):
    status, stderr = run_in_process("mcts.py", flags, capsys)
    assert status == 2 and named in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (in_tmp / "runs").exists()


def test_match_against_openspiel_writes_games_and_summary(tmp_path):
    run_dir = run_ok("mcts.py", ["--game", "connect_four", "--opponent", "openspiel", "--num-simulations", "50",
                                 "--num-games", "4", "--seed", "2"], tmp_path)  # seed 2 once gave a seed over 2^31
    rows = (run_dir / "games.csv").read_text().splitlines()
    assert rows[0] == "game,mcts_player,outcome,moves,wall_time"
    assert [row.split(",")[1] for row in rows[1:]] == ["0", "1", "0", "1"]  # colours alternate
    summary = read_summary(run_dir)
    assert summary["wins"] + summary["draws"] + summary["losses"] == summary["games"] == 4
    assert summary["sps"] > 0 and len(summary["loss_rate_ci95"]) == 2


def play_in_terminal(tmp_path, flags: list, typed: str, interrupt: bool = False):
    process = subprocess.Popen([sys.executable, str(ALGORITHMS / "mcts.py"), "--num-simulations", "200", *flags],
                               cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=sigint_as_in_a_terminal)
    if interrupt:
        process.stdin.write(typed)
        process.stdin.flush()
        time.sleep(3)  # it waits for the next move
        process.send_signal(signal.SIGINT)
        typed = None
    stdout, stderr = process.communicate(typed, timeout=120)
    return process.returncode, stdout, stderr


def test_play_in_the_terminal_asks_again_after_bad_moves_and_ends_cleanly(tmp_path):
    # x takes 4, then tries an occupied cell, nonsense, a cell by name; the input ends mid-game
    code, stdout, stderr = play_in_terminal(tmp_path, ["--play", "first"], "4\n4\nhello\n99\nx(0,0)\n")
    assert code == 0 and "Traceback" not in stderr, stderr
    assert stdout.count("is not a legal move here") == 3 and "Game ended." in stdout
    assert "x(1,1)" in stdout and "Your move:" in stdout
    assert not (tmp_path / "runs").exists(), "a game in the terminal writes no run"


def test_play_in_the_terminal_to_the_end_and_ctrl_c(tmp_path):
    moves = "".join(f"{cell}\n" for cell in range(9))  # the lowest free cell each turn: the game ends
    code, stdout, _ = play_in_terminal(tmp_path, ["--play", "second"], moves * 9)
    assert code == 0 and ("MCTS wins" in stdout or "Draw" in stdout), stdout[-500:]
    code, stdout, stderr = play_in_terminal(tmp_path, ["--play", "first", "--game", "connect_four"], "3\n",
                                            interrupt=True)
    assert code == 0 and "Game ended." in stdout and "Traceback" not in stderr, stderr


@pytest.mark.learning
def test_mcts_never_loses_to_random_play_and_draws_perfect_play_at_1000_simulations(in_tmp):
    against_random = mcts.train(mcts.Args(opponent="random", num_games=20, num_simulations=1000, seed=3))
    assert against_random["losses"] == 0 and against_random["wins"] >= 16
    against_perfect = mcts.train(mcts.Args(opponent="perfect", num_games=20, num_simulations=1000, seed=3))
    assert against_perfect["losses"] <= 2  # OpenSpiel's MCTSBot loses 2% at 1,000 (the figure)
    summary = json.loads((in_tmp / against_perfect["run_dir"] / "summary.json").read_text())
    assert summary["games"] == 20 and summary["wins"] == 0  # nobody beats perfect play
