"""alphazero.py: PUCT and the backup by hand, Dirichlet noise at the root only, the visit-count policy
target, the outcome target from the mover's view, the board symmetries, forced moves found by search, the
loss, bad input, the terminal game; and the learning test: trained from scratch on tic-tac-toe, it never
loses to a perfect player."""

import importlib.util
import subprocess
import sys

import numpy as np
import pyspiel
import pytest
import torch

from conftest import ALGORITHMS, ROOT, load_module, read_summary, run_in_process, run_ok

alphazero = load_module("alphazero.py")
mcts = load_module("mcts.py")  # its exhaustive perfect player
TIC_TAC_TOE = pyspiel.load_game("tic_tac_toe")
CONNECT_FOUR = pyspiel.load_game("connect_four")
CPU = torch.device("cpu")


def position(game, actions: list):
    state = game.new_initial_state()
    for action in actions:
        state.apply_action(action)
    return state


def untrained_net(game, seed: int = 0):
    torch.manual_seed(seed)
    return alphazero.PolicyValueNet(game.observation_tensor_size() + 2, game.num_distinct_actions(), 32, 2)


def test_puct_scores_by_hand():
    node = alphazero.Node(position(TIC_TAC_TOE, [0, 4, 8]), np.full(9, 1 / 6))  # o to move, 6 legal moves
    node.priors = np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    for value in (0.5, 0.5, 0.5):  # three simulations through move 1, each worth 0.5 to o
        alphazero.backup([(node, 0)], {0: -value, 1: value})
    alphazero.backup([(node, 1)], {0: 1.0, 1: -1.0})  # one through move 2, lost by o
    assert (node.visits, list(node.child_visits[:2]), list(node.child_values[:2])) == (5, [3, 1], [1.5, -1.0])
    expected = [0.5 + 1.25 * 0.5 * np.sqrt(5) / 4, -1.0 + 1.25 * 0.1 * np.sqrt(5) / 2] + [1.25 * 0.1 * np.sqrt(5)] * 4
    assert alphazero.puct_scores(node, 1.25) == pytest.approx(expected)
    assert list(node.actions) == [1, 2, 3, 5, 6, 7] and node.player == 1


def test_backup_gives_each_node_the_value_of_its_own_mover():
    root = alphazero.Node(position(TIC_TAC_TOE, []), np.full(9, 1 / 9))  # x to move
    child = alphazero.Node(position(TIC_TAC_TOE, [4]), np.full(9, 1 / 8))  # o to move
    alphazero.backup([(root, 4), (child, 0)], {0: 0.6, 1: -0.6})  # a leaf worth +0.6 for x
    assert (root.child_values[4], child.child_values[0]) == (0.6, -0.6)
    assert (root.child_visits[4], child.child_visits[0], root.visits, child.visits) == (1, 1, 2, 2)


def test_dirichlet_noise_only_at_the_root_of_self_play():
    state = position(TIC_TAC_TOE, [])
    net = untrained_net(TIC_TAC_TOE)
    args = alphazero.Args(num_simulations=30)
    clean_priors, _ = alphazero.evaluate_states(net, [state], CPU)
    noisy_root = alphazero.search([state], net, args, 30, CPU, np.random.default_rng(0))[0]
    assert not np.allclose(noisy_root.priors, clean_priors[0]) and noisy_root.priors.sum() == pytest.approx(1)
    expanded = [child for child in noisy_root.children if child is not None]
    for child in expanded:  # below the root: the network's priors, untouched
        child_state = position(TIC_TAC_TOE, [int(noisy_root.actions[noisy_root.children.index(child)])])
        assert np.allclose(child.priors, alphazero.evaluate_states(net, [child_state], CPU)[0][0][child.actions])
    greedy_root = alphazero.search([state], net, args, 30, CPU, None)[0]
    assert np.allclose(greedy_root.priors, clean_priors[0])


def test_dirichlet_noise_mixes_by_epsilon():
    node = alphazero.Node(position(TIC_TAC_TOE, []), np.full(9, 1 / 9))
    noise = np.random.default_rng(3).dirichlet(np.full(9, 0.3))
    alphazero.add_dirichlet_noise(node, 0.3, 0.25, np.random.default_rng(3))
    assert node.priors == pytest.approx(0.75 / 9 + 0.25 * noise)


def test_visit_policy_is_the_normalised_visit_counts_over_all_moves():
    node = alphazero.Node(position(TIC_TAC_TOE, [0, 4]), np.full(9, 1 / 7))
    node.child_visits[:] = [1, 0, 3, 0, 0, 4, 2]  # actions 1, 2, 3, 5, 6, 7, 8
    assert alphazero.visit_policy(node, 9) == pytest.approx([0, 0.1, 0, 0.3, 0, 0, 0, 0.4, 0.2])


@pytest.mark.parametrize("game, actions, expected", [
    (TIC_TAC_TOE, [0, 3, 1, 4], 2),          # x wins in one
    (TIC_TAC_TOE, [0, 4, 8, 1], 7),          # x must block
    (TIC_TAC_TOE, [0, 3, 1, 4, 8], 5),       # o wins in one
    (TIC_TAC_TOE, [0, 4, 1], 2),             # o must block
    (CONNECT_FOUR, [0, 6, 1, 6, 2, 6], 3),   # x wins in one
    (CONNECT_FOUR, [0, 6, 1, 6, 2], 3),      # o must block
])
def test_search_with_an_untrained_network_finds_forced_moves_from_exact_game_ends(game, actions, expected):
    state = position(game, actions)
    args = alphazero.Args(num_simulations=400)
    assert alphazero.greedy_moves([state], untrained_net(game), args, CPU) == [expected]


def test_symmetries_of_tic_tac_toe_map_positions_to_positions():
    """Each of the 8 maps turns a position's features, legal moves and a winning move into those of the
    rotated or reflected board: the transformed winning move wins the transformed position."""
    feature_maps, action_maps = alphazero.symmetries(TIC_TAC_TOE)
    assert len(feature_maps) == 8 and len({tuple(m) for m in action_maps}) == 8
    assert (feature_maps[0] == np.arange(29)).all() and (action_maps[0] == np.arange(9)).all()
    actions = [0, 3, 1, 4]  # x to move wins at 2
    state = position(TIC_TAC_TOE, actions)
    for feature_map, action_map in zip(feature_maps, action_maps):
        where = {int(old): new for new, old in enumerate(action_map)}  # old cell -> new cell
        moved = position(TIC_TAC_TOE, [where[a] for a in actions])
        assert (alphazero.features(state)[feature_map] == alphazero.features(moved)).all()
        assert (np.array(state.legal_actions_mask())[action_map] == np.array(moved.legal_actions_mask())).all()
        assert moved.child(where[2]).returns()[0] == 1.0


def test_connect_four_has_the_mirror_only():
    feature_maps, action_maps = alphazero.symmetries(CONNECT_FOUR)
    assert (action_maps == [np.arange(7), np.arange(7)[::-1]]).all()
    state, mirrored = position(CONNECT_FOUR, [0, 1, 0]), position(CONNECT_FOUR, [6, 5, 6])
    assert (alphazero.features(state)[feature_maps[1]] == alphazero.features(mirrored)).all()
    feature_maps, action_maps = alphazero.symmetries(pyspiel.load_game("hex(board_size=3)"))
    assert len(feature_maps) == 1  # no symmetry claimed for a game not listed


def test_loss_by_hand_and_outcomes_from_the_movers_view():
    log_priors = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]))
    values, outcomes = torch.tensor([0.5, -1.0]), torch.tensor([1.0, -1.0])
    policies = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    value_loss, policy_loss = alphazero.alphazero_loss(log_priors, values, policies, outcomes)
    assert value_loss.item() == pytest.approx(0.125)
    assert policy_loss.item() == pytest.approx((np.log(2) + 0.5 * np.log(4) + 0.5 * np.log(2)) / 2)


def test_self_play_stores_each_position_with_the_outcome_for_its_mover(in_tmp, monkeypatch):
    stored = []
    original_add = alphazero.ReplayBuffer.add

    def record(self, features, legal, policy, outcome):
        stored.append((features.copy(), outcome))
        original_add(self, features, legal, policy, outcome)

    monkeypatch.setattr(alphazero.ReplayBuffer, "add", record)
    result = alphazero.train(alphazero.Args(total_timesteps=64, num_envs=8, num_simulations=4, eval_episodes=1,
                                            eval_every=0, updates_per_step=0, eval_opponent="random"))
    assert stored and len(result["episodic_returns"]) >= 1
    first_game_length = int((in_tmp / result["run_dir"] / "episodes.csv").read_text().splitlines()[1].split(",")[2])
    assert len(stored) >= first_game_length
    for features, outcome in stored:  # the last two features: the one-hot of the player to move
        assert outcome in (-1.0, 0.0, 1.0) and features[-2] + features[-1] == 1.0
    # within one game, the outcomes of x's and o's positions are opposite (zero sum)
    game_positions = stored[:first_game_length]
    by_mover = {0 if f[-2] == 1.0 else 1: o for f, o in game_positions}
    assert by_mover[0] == -by_mover[1]


@pytest.mark.parametrize("flags, named", [
    (["--game", "tic_tac_to"], "--game"),
    (["--game", "backgammon"], "deterministic"),
    (["--game", "kuhn_poker"], "perfect-information"),
    (["--num-simulations", "0"], "--num-simulations"),
    (["--batch-size", "100", "--buffer-size", "10"], "--batch-size"),
    (["--learning-starts", "20000", "--buffer-size", "10000"], "--learning-starts"),
    (["--learning-starts", "100", "--total-timesteps", "100"], "--learning-starts"),
    (["--dirichlet-epsilon", "2"], "--dirichlet-epsilon"),
    (["--play", "first"], "--play needs --model-path"),
    # the evaluation opponent, OpenSpiel's MCTSBot, plays seed + 10,000 and takes a signed 32-bit seed
    (["--seed", str(2**31 - 10_000)], "--seed"),
    (["--weight-decay", "-0.1"], "--weight-decay"),  # was torch's ValueError traceback
])
def test_bad_input_exits_2_with_one_line(flags, named, in_tmp, capsys):
    status, stderr = run_in_process("alphazero.py", flags, capsys)
    assert status == 2 and named in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (in_tmp / "runs").exists()


@pytest.mark.learning
def test_trained_on_tic_tac_toe_it_never_loses_to_perfect_play(tmp_path):
    """A few minutes of self-play at 50 simulations per move; then every game a perfect player can make
    against it (any of its optimal moves, each time), both colours: no loss; nor in the run's final evaluation,
    20 games against OpenSpiel's MCTSBot with 1,000 rollout simulations."""
    run_dir = run_ok("alphazero.py", ["--save-model", "--eval-episodes", "20", "--eval-every", "0"], tmp_path,
                     timeout=900)
    assert read_summary(run_dir)["eval_returns"].count(-1.0) == 0
    saved = torch.load(run_dir / "alphazero.pt")
    net = alphazero.PolicyValueNet(29, 9, saved["args"]["hidden_size"], saved["args"]["num_layers"])
    net.load_state_dict(saved["net"])
    args = alphazero.Args(num_simulations=saved["args"]["num_simulations"])
    network_player = lambda state: alphazero.greedy_moves([state], net, args, CPU)[0]  # noqa: E731
    spec = importlib.util.spec_from_file_location("alphazero_runs", ROOT / "benchmarks" / "games" / "alphazero_runs.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)  # its exhaustive check of the perfect player's lines
    perfect = mcts.PerfectPlayer(TIC_TAC_TOE, seed=0)
    losses, games = benchmark.losing_lines(TIC_TAC_TOE, network_player, perfect, mcts.solve)
    assert games > 50 and losses == 0, f"lost {losses} of the {games} games perfect play can make"

    # the saved network plays a person in the terminal: bad moves asked again, the end of input ends the game
    played = subprocess.run([sys.executable, str(ALGORITHMS / "alphazero.py"), "--model-path",
                             str(run_dir / "alphazero.pt"), "--play", "second"], input="4\nzz\n9\n",
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert played.returncode == 0 and "Traceback" not in played.stderr, played.stderr
    assert "Your move:" in played.stdout and "is not a legal move here" in played.stdout
    assert "Game ended." in played.stdout or "wins" in played.stdout or "Draw" in played.stdout
