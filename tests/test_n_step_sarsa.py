"""n_step_sarsa.py: the n-step return, the window (termination and truncation inside it, the last n - 1
updates), n = 1 is sarsa.py, n >= the episode length is Monte Carlo, the book's box, the 19-state random
walk (Example 7.1, Figure 7.2's RMS error) and learning on the walk and the cliff."""

import contextlib
import io
import json
from collections import deque

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_module

nstep = load_module("n_step_sarsa.py")
sarsa = load_module("sarsa.py")

WALK = nstep.WALK_ID
WALK_STATES = np.arange(1, 20)
ALPHA_ZERO_RMS = np.sqrt(0.3)  # RMS of v_pi over the 19 states: sqrt(2 * (0.1^2 + ... + 0.9^2) / 19)


def quiet_train(**fields) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return nstep.train(nstep.Args(**fields))


def drive(table, keys, rewards, final_key, terminated, n, alpha, gamma) -> list:
    """Feed one episode to n_step_updates as train() does: step t pushes (key_t, R_{t+1}), then bootstraps
    from the next step's key (final_key after the last step). Returns the number of updates per call."""
    pending_keys, pending_rewards, counts = deque(), deque(), []
    for t, (key, reward) in enumerate(zip(keys, rewards)):
        last = t == len(keys) - 1
        pending_keys.append(key)
        pending_rewards.append(reward)
        next_key = final_key if last else keys[t + 1]
        counts.append(len(nstep.n_step_updates(table, pending_keys, pending_rewards, next_key,
                                               terminated and last, last, n, alpha, gamma)))
    assert not pending_keys and not pending_rewards, "an update was left pending at the end of the episode"
    return counts


# ---------------------------------------------------------------------------------------- the return
def test_n_step_return_by_hand():
    # 1 + 0.5 * 2 + 0.25 * 4 + 0.125 * 8 = 4
    assert nstep.n_step_return([1.0, 2.0, 4.0], 0.5, 8.0) == pytest.approx(4.0)
    assert nstep.n_step_return(deque([1.0, 2.0, 4.0]), 0.5, 0.0) == pytest.approx(3.0)  # no bootstrap
    assert nstep.n_step_return([], 0.5, 8.0) == 8.0  # k = 0: the value itself
    assert nstep.n_step_return([3.0, 5.0], 0.0, 8.0) == 3.0  # gamma 0: the first reward only
    assert nstep.n_step_return([-1.0, 0.0, 0.0], 1.0, 0.5) == pytest.approx(-0.5)


# ---------------------------------------------------------------------------------------- the window
# Control, n = 3, alpha 0.5, gamma 0.5, Q(s, a) = 2 s + a before the episode. The episode:
# (S, A) = (0, 1), (1, 0), (2, 1), (3, 0) with R = 1, 2, 4, 8, ending in S_4 = 4 (A_4 = 0, Q = 8).
KEYS, REWARDS, FINAL_KEY = [(0, 1), (1, 0), (2, 1), (3, 0)], [1.0, 2.0, 4.0, 8.0], (4, 0)


def initial_q() -> np.ndarray:
    return np.arange(10.0).reshape(5, 2)


@pytest.mark.parametrize("terminated, by_hand", [
    # tau = 0 (at t = 2): G = 1 + 0.5 * 2 + 0.25 * 4 + 0.125 * Q(3, 0) = 3.75 -> 1 + 0.5 * (3.75 - 1) = 2.375.
    # S_4 terminal: tau = 1: G = 2 + 0.5 * 4 + 0.25 * 8 = 6 -> 4; tau = 2: G = 4 + 0.5 * 8 = 8 -> 6.5;
    # tau = 3: G = 8 -> 7. Q(4, 0) = 8 is never read.
    (True, {(0, 1): 2.375, (1, 0): 4.0, (2, 1): 6.5, (3, 0): 7.0}),
    # truncated at S_4: each pending return bootstraps from Q(S_4, A_4) = 8: tau = 1: 6 + 0.125 * 8 = 7 -> 4.5;
    # tau = 2: 8 + 0.25 * 8 = 10 -> 7.5; tau = 3: 8 + 0.5 * 8 = 12 -> 9.
    (False, {(0, 1): 2.375, (1, 0): 4.5, (2, 1): 7.5, (3, 0): 9.0}),
], ids=["termination", "truncation"])
def test_the_window_by_hand(terminated, by_hand):
    q_table = initial_q()
    counts = drive(q_table, KEYS, REWARDS, FINAL_KEY, terminated, n=3, alpha=0.5, gamma=0.5)
    assert counts == [0, 0, 1, 3]  # tau = 0 once R_3 is seen; the last n - 1 = 2 and tau = 1 at the end
    expected = initial_q()
    for key, value in by_hand.items():
        expected[key] = value
    np.testing.assert_allclose(q_table, expected)  # the four entries as computed, nothing else moved


def test_prediction_truncation_bootstraps_from_v_of_the_final_state():
    # V(s) = s; states 0, 1, 2 with R = 1, 1, n = 2, alpha 1, gamma 1, truncated in S_3 = 4 (V = 4)
    values = np.arange(5.0)
    drive(values, [(0,), (1,), (2,)], [1.0, 1.0, 1.0], (4,), False, n=2, alpha=1.0, gamma=1.0)
    # tau = 0: 1 + 1 + V(2) = 4; tau = 1: 1 + 1 + V(4) = 6; tau = 2: 1 + V(4) = 5
    np.testing.assert_allclose(values, [4.0, 6.0, 5.0, 3.0, 4.0])


@pytest.mark.parametrize("n, length", [(5, 7), (5, 3), (1, 4), (4, 4)])
def test_every_step_is_updated_once_and_the_last_n_minus_1_at_the_end(n, length):
    """Each key a state of its own, alpha 1: an updated entry equals its (finite) return, never 0."""
    values = np.zeros(length + 1)
    counts = drive(values, [(s,) for s in range(length)], [1.0] * length, (length,), True, n=n, alpha=1.0, gamma=1.0)
    assert sum(counts) == length
    assert counts[-1] == min(n, length)  # the update for T - n plus the last n - 1 (or every step, if fewer)
    assert counts[:-1] == [1 if t + 1 >= n else 0 for t in range(length - 1)]
    # after termination each V(S_t) is the sum of the rewards left, at most n of them; nothing bootstraps
    np.testing.assert_allclose(values[:length], [min(n, length - t) for t in range(length)])


def test_n_at_least_the_episode_length_gives_the_monte_carlo_return():
    rng = np.random.default_rng(0)
    gamma, length = 0.9, 12
    rewards = rng.normal(size=length)
    monte_carlo = [sum(gamma ** k * reward for k, reward in enumerate(rewards[t:])) for t in range(length)]
    for n in (length, length + 1, 1000):
        values = rng.normal(size=length + 1)  # whatever the start, alpha 1 sets each entry to its return
        drive(values, [(s,) for s in range(length)], rewards.tolist(), (length,), True, n=n, alpha=1.0, gamma=gamma)
        np.testing.assert_allclose(values[:length], monte_carlo)


def book_n_step_td(values, states, rewards, n, alpha, gamma):
    """The box on p. 144 as printed (T, tau, the sum from tau + 1 to min(tau + n, T)), for one episode that
    terminates in states[-1]: states S_0..S_T, rewards R_1..R_T."""
    terminal = len(states) - 1
    for t in range(terminal + n - 1):
        tau = t - n + 1
        if tau >= 0:
            g = sum(gamma ** (i - tau - 1) * rewards[i - 1] for i in range(tau + 1, min(tau + n, terminal) + 1))
            if tau + n < terminal:
                g += gamma ** n * values[states[tau + n]]
            values[states[tau]] += alpha * (g - values[states[tau]])
        if tau == terminal - 1:
            break


@pytest.mark.parametrize("n", [1, 2, 3, 5, 20])
def test_the_window_is_the_books_box_on_random_walk_episodes(n):
    """Episodes that revisit states (so updates read values earlier updates wrote), any n."""
    rng = np.random.default_rng(n)
    ours, book = np.zeros(7), np.zeros(7)
    for _ in range(30):
        states = [3]
        while states[-1] not in (0, 6):
            states.append(states[-1] + rng.choice([-1, 1]))
        rewards = [0.0] * (len(states) - 2) + [1.0 if states[-1] == 6 else -1.0]
        drive(ours, [(s,) for s in states[:-1]], rewards, (states[-1],), True, n=n, alpha=0.4, gamma=0.9)
        book_n_step_td(book, states, rewards, n, 0.4, 0.9)
        np.testing.assert_allclose(ours, book, atol=1e-12)
    assert np.abs(ours[1:6]).min() > 0  # the episodes did teach every non-terminal state something


class TwoStateEnv(gym.Env):
    """Reset in state 0; any step moves to state 1 (reward 0), which then pays 1 forever; only the time
    limit ends an episode. True values at gamma 0.9: V(1) = 1 / (1 - gamma) = 10, V(0) = gamma V(1) = 9.
    Cutting the returns at the time limit, or letting the window run on into the next episode, gives others."""

    observation_space, action_space = gym.spaces.Discrete(2), gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return 0, {}

    def step(self, action):
        reward, self.state = float(self.state), 1
        return 1, reward, False, False, {}


@pytest.mark.parametrize("prediction", [False, True], ids=["control", "prediction"])
def test_training_with_time_limits_converges_to_the_true_values(prediction, in_tmp):
    if "LucidRL/TwoStateN-v0" not in gym.registry:
        gym.register("LucidRL/TwoStateN-v0", entry_point=TwoStateEnv, max_episode_steps=4)
    result = quiet_train(env_id="LucidRL/TwoStateN-v0", prediction=prediction, n_step=3, gamma=0.9,
                         total_timesteps=2_000, eval_episodes=1)
    table = result["v_table"] if prediction else result["q_table"][:, 0]
    np.testing.assert_allclose(table, [9.0, 10.0], rtol=1e-3)


def test_the_end_of_the_budget_makes_the_pending_updates(in_tmp):
    """3 steps, n = 4, alpha 1, gamma 0.9, no episode end: S = 0, 1, 1, then S_3 = 1 with R = 0, 1, 1. Made at
    the budget's end as after a truncation: V(0) = 0.9 + 0.81 + 0.729 V(1) = 1.71 (V(1) still 0), then
    V(1) = 1 + 0.9 + 0.81 V(1) = 1.9, then again V(1) = 1 + 0.9 V(1) = 2.71. Dropped, V would stay 0."""
    if "LucidRL/TwoStateN-v0" not in gym.registry:
        gym.register("LucidRL/TwoStateN-v0", entry_point=TwoStateEnv, max_episode_steps=4)
    result = quiet_train(env_id="LucidRL/TwoStateN-v0", prediction=True, n_step=4, learning_rate=1.0, gamma=0.9,
                         total_timesteps=3, eval_episodes=1)
    np.testing.assert_allclose(result["v_table"], [1.71, 2.71])


# ---------------------------------------------------------------------------------------- n = 1 is SARSA
def test_n_1_is_sarsas_one_step_update():
    rng = np.random.default_rng(3)
    q_sarsa = rng.normal(size=(4, 2))
    q_nstep = q_sarsa.copy()
    pending_keys, pending_rewards = deque(), deque()
    for _ in range(200):
        obs, action, next_obs, next_action = rng.integers(4), rng.integers(2), rng.integers(4), rng.integers(2)
        reward, terminated, truncated = rng.normal(), rng.random() < 0.1, rng.random() < 0.1
        sarsa.sarsa_update(q_sarsa, obs, action, reward, next_obs, next_action, terminated, 0.3, 0.9)
        pending_keys.append((obs, action))
        pending_rewards.append(reward)
        nstep.n_step_updates(q_nstep, pending_keys, pending_rewards, (next_obs, next_action), terminated,
                             terminated or truncated, 1, 0.3, 0.9)
        np.testing.assert_allclose(q_nstep, q_sarsa, rtol=0, atol=1e-12)


def test_n_1_trains_exactly_as_sarsa_py(in_tmp):
    """Same seed, Example 6.6's settings: the same episodes and the same table, bit for bit."""
    settings = dict(seed=3, total_timesteps=5_000, learning_rate=0.5, start_e=0.1, end_e=0.1, eval_episodes=1)
    ours = quiet_train(n_step=1, **settings)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = sarsa.train(sarsa.Args(**settings))
    assert len(ours["episodic_returns"]) > 50  # measured: 88
    assert ours["episodic_returns"] == theirs["episodic_returns"]
    assert np.array_equal(ours["q_table"], theirs["q_table"])


# ---------------------------------------------------------------------------------------- the random walk
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
def test_the_walks_true_values_solve_bellmans_equation_at_any_gamma(gamma):
    """v(s) = 0.5 (r_left + gamma v(s - 1)) + 0.5 (r_right + gamma v(s + 1)), the ends paying -1 and +1: what
    the RMS error is measured against, so that --gamma below 1 is measured against its own values."""
    values = nstep.RandomWalk().true_values(gamma)
    assert values.shape == (21,) and values[0] == values[20] == 0.0 and values[10] == pytest.approx(0.0, abs=1e-12)
    rewards_left, rewards_right = np.zeros(21), np.zeros(21)
    rewards_left[1], rewards_right[19] = -1.0, 1.0
    bellman = 0.5 * (rewards_left[1:20] + gamma * values[0:19]) + 0.5 * (rewards_right[1:20] + gamma * values[2:21])
    np.testing.assert_allclose(values[1:20], bellman, atol=1e-12)
    if gamma < 1:  # discounting shrinks every value toward 0
        assert np.all(np.abs(values[1:20]) < np.abs(nstep.RandomWalk().true_values()[1:20]) + 1e-12)


def test_random_walk_steps_rewards_and_true_values():
    env = nstep.RandomWalk()
    assert env.reset(seed=0)[0] == 10
    for _ in range(9):
        assert env.step(1)[1:3] == (0.0, False)
    assert env.step(1)[:3] == (20, 1.0, True)
    env.reset()
    for _ in range(9):
        env.step(0)
    assert env.step(0)[:3] == (0, -1.0, True)
    true_values = env.true_values()
    assert true_values.shape == (21,) and true_values[0] == true_values[20] == 0.0
    np.testing.assert_allclose(true_values[1:20], np.arange(-9, 10) / 10)
    # v_pi(s) = (v_pi(s - 1) + v_pi(s + 1)) / 2 with the rewards at the ends: Bellman's equation for pi
    rewards_left, rewards_right = np.zeros(21), np.zeros(21)
    rewards_left[1], rewards_right[19] = -1.0, 1.0
    bellman = 0.5 * (rewards_left[1:20] + true_values[0:19]) + 0.5 * (rewards_right[1:20] + true_values[2:21])
    np.testing.assert_allclose(true_values[1:20], bellman)
    assert nstep.rms_error(np.zeros(21), true_values, WALK_STATES) == pytest.approx(ALPHA_ZERO_RMS)
    assert nstep.rms_error(true_values, true_values, WALK_STATES) == 0.0
    assert env.render().shape == (nstep.CELL_PIXELS, 21 * nstep.CELL_PIXELS, 3)


@pytest.mark.parametrize("n", [1, 4, 512])
def test_alpha_0_keeps_the_rms_error_at_sqrt_0_3(n, in_tmp):
    result = quiet_train(prediction=True, env_id=WALK, n_step=n, learning_rate=0.0, total_episodes=5,
                         total_timesteps=100_000, eval_episodes=1)
    assert result["rms_errors"] == [pytest.approx(0.5477225575)] * 5
    assert not result["v_table"].any()
    summary = json.loads(open(f"{result['run_dir']}/summary.json").read())
    assert summary["rms_error"] == pytest.approx(ALPHA_ZERO_RMS)
    assert len(result["episodic_returns"]) == 5  # --total-episodes stopped it


def test_prediction_evaluates_the_uniform_policy_and_tables_do_not_mix(in_tmp, capsys):
    result = quiet_train(prediction=True, env_id=WALK, total_timesteps=2_000, eval_episodes=10, save_model=True)
    assert {-1.0, 1.0} <= set(result["eval_returns"])  # a greedy policy would end on one side only
    values_file = f"{result['run_dir']}/n_step_sarsa.npz"
    # another seed: another run directory (the name holds the seed and the second it started)
    control = quiet_train(env_id=WALK, total_timesteps=2_000, eval_episodes=1, save_model=True, seed=2)
    for model_path, prediction, named in ((values_file, False, "add --prediction"),
                                          (f"{control['run_dir']}/n_step_sarsa.npz", True, "leave out --prediction")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            quiet_train(env_id=WALK, prediction=prediction, model_path=model_path, total_timesteps=0)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1 and named in lines[0], lines


@pytest.mark.parametrize("fields, named", [
    (dict(learning_rate=0.0), "--learning-rate must be in (0, 1]"),
    (dict(learning_rate=1.5, prediction=True), "--learning-rate must be in [0, 1]"),
    (dict(n_step=0), "--n-step"),
    (dict(total_episodes=0), "--total-episodes"),
])
def test_arguments_that_cannot_work(fields, named, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        nstep.check_args(nstep.Args(**fields))
    assert exit_info.value.code == 2 and named in capsys.readouterr().err


class NanRewardEnv(gym.Env):
    """Reward NaN on the third step: the run must stop, naming the quantity and the step."""

    observation_space, action_space = gym.spaces.Discrete(2), gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return 1, float("nan") if self.t == 3 else 0.0, False, False, {}


def test_a_nan_stops_the_run_naming_the_quantity_and_step(in_tmp, capsys):
    if "LucidRL/NanReward-v0" not in gym.registry:
        gym.register("LucidRL/NanReward-v0", entry_point=NanRewardEnv, max_episode_steps=50)
    with pytest.raises(SystemExit) as exit_info:
        quiet_train(env_id="LucidRL/NanReward-v0", n_step=2, total_timesteps=100)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "n-step TD error" in error and "step 3" in error, error


# ---------------------------------------------------------------------------------------- learning
@pytest.mark.learning
def test_prediction_on_the_walk_learns_well_below_alpha_0(in_tmp):
    """n = 4, alpha 0.3: Figure 7.2's best point, ≈ 0.27 averaged over the first 10 episodes and 100 runs
    (measured over seeds 1-100: 0.276). Ten seeds here."""
    mean_rms = [np.mean(quiet_train(prediction=True, env_id=WALK, n_step=4, learning_rate=0.3, total_episodes=10,
                                    total_timesteps=100_000, eval_episodes=1, seed=seed)["rms_errors"])
                for seed in range(1, 11)]
    assert np.mean(mean_rms) < 0.33 and max(mean_rms) < ALPHA_ZERO_RMS, mean_rms


@pytest.mark.learning
def test_control_on_the_cliff_finds_a_safe_or_the_optimal_path_at_the_defaults(in_tmp):
    """Defaults (n = 4, alpha 0.2, epsilon 0.1 -> 0), seed 1: the greedy path reaches the goal at -17 (the top
    row, safe) or better (-13 is the optimal path along the edge), and the late online return is near it."""
    result = quiet_train(eval_episodes=1)
    assert result["eval_returns"][0] >= -17, result["eval_returns"]
    assert np.mean(result["episodic_returns"][-100:]) > -20
    assert np.mean(result["episodic_returns"][:20]) < -100  # it did have to learn
