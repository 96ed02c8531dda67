"""td_lambda.py: TD(lambda) with accumulating traces by hand, true online TD(lambda) against a brute-force
online lambda-return algorithm, the off-line lambda-return algorithm against true online TD(lambda) and
Monte Carlo, lambda = 0 against TD(0), termination vs truncation, and the 19-state random walk of
Sutton & Barto (2018), Section 12.1."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

import custom_envs  # importing it registers Countdown-v0
from conftest import load_module, register_endless_reward_env

td_lambda = load_module("td_lambda.py")
METHODS = ["td_lambda", "true_online", "offline_lambda_return"]
ONLINE_STEPS = {"td_lambda": td_lambda.td_lambda_step, "true_online": td_lambda.true_online_td_lambda_step}


def train_quietly(**kwargs) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return td_lambda.train(td_lambda.Args(eval_episodes=1, **kwargs))


def random_episode(rng, length: int, dims: int, terminated: bool) -> tuple:
    """Dense, overlapping features x(S_0)..x(S_T) (x(S_T) = 0 after a termination) and rewards R_1..R_T."""
    features = rng.normal(size=(length + 1, dims))
    if terminated:
        features[length] = 0.0
    return features, rng.normal(size=length)


def run_online(step, weights, features, rewards, alpha, gamma, lam) -> list:
    """The weights after each step of one episode, from an online method's step function."""
    trace, value_old, history = np.zeros_like(weights), 0.0, []
    for t, reward in enumerate(rewards):
        if step is td_lambda.true_online_td_lambda_step:
            _, value_old = step(weights, trace, features[t], reward, features[t + 1], value_old, alpha, gamma, lam)
        else:
            step(weights, trace, features[t], reward, features[t + 1], alpha, gamma, lam)
        history.append(weights.copy())
    return history


# ---------------------------------------------------------------------------------------- TD(lambda)
def test_td_lambda_two_steps_by_hand():
    """alpha 0.1, gamma 0.9, lambda 0.5, w = (0.5, -1), x0 = (1, 2), x1 = (0, 1), x2 = (2, 1), R = 1 then 0.
    Step 1: z = (1, 2); delta = 1 + 0.9 (-1) - (0.5 - 2) = 1.6; w = (0.5, -1) + 0.16 (1, 2) = (0.66, -0.68).
    Step 2: z = 0.45 (1, 2) + (0, 1) = (0.45, 1.9); v(x1) = -0.68, v(x2) = 1.32 - 0.68 = 0.64;
    delta = 0.9 * 0.64 + 0.68 = 1.256; w = (0.66, -0.68) + 0.1256 (0.45, 1.9) = (0.71652, -0.44136).
    The first weight moves at step 2 only through the trace (x1 has no first component)."""
    weights, trace = np.array([0.5, -1.0]), np.zeros(2)
    x0, x1, x2 = np.array([1.0, 2.0]), np.array([0.0, 1.0]), np.array([2.0, 1.0])
    assert td_lambda.td_lambda_step(weights, trace, x0, 1.0, x1, 0.1, 0.9, 0.5) == pytest.approx(1.6)
    np.testing.assert_allclose(weights, [0.66, -0.68])
    assert td_lambda.td_lambda_step(weights, trace, x1, 0.0, x2, 0.1, 0.9, 0.5) == pytest.approx(1.256)
    np.testing.assert_allclose(trace, [0.45, 1.9])
    np.testing.assert_allclose(weights, [0.71652, -0.44136])


@pytest.mark.parametrize("step", list(ONLINE_STEPS.values()), ids=list(ONLINE_STEPS))
def test_lambda_zero_is_td_zero(step):
    """At lambda = 0 both traces are x(S) alone, and both updates are semi-gradient TD(0),
    w <- w + alpha delta x(S) (Eq. 9.7 with the target R + gamma v(S'))."""
    rng = np.random.default_rng(3)
    features, rewards = random_episode(rng, 8, 4, terminated=True)
    alpha, gamma = 0.2, 0.9
    start = rng.normal(size=4)
    history = run_online(step, start.copy(), features, rewards, alpha, gamma, 0.0)
    weights = start.copy()
    for t, reward in enumerate(rewards):
        weights = weights + alpha * (reward + gamma * weights @ features[t + 1] - weights @ features[t]) * features[t]
        np.testing.assert_allclose(history[t], weights, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------- true online TD(lambda)
def online_lambda_return_weights(start, features, rewards, alpha, gamma, lam) -> list:
    """The online lambda-return algorithm (Section 12.4) by brute force: at each horizon h = 1..T, redo the
    whole sweep w^h_{t+1} = w^h_t + alpha [G^lambda_{t:h} - w^h_t . x_t] x_t from the episode's first weights,
    with the truncated lambda-return of Eq. 12.9, whose n-step returns bootstrap from v(S_{t+n}, w_{t+n-1}),
    w_k = w^k_k the weights the algorithm had at time k. Returns [w_1, ..., w_T]."""
    weights_at = [start]  # w_k = w^k_k

    def n_step_return(t, n):  # G_{t:t+n} (Eq. 12.1); features[T] is 0 after a termination
        return sum(gamma ** k * rewards[t + k] for k in range(n)) + gamma ** n * weights_at[t + n - 1] @ features[t + n]

    for horizon in range(1, len(rewards) + 1):
        weights = start.copy()
        for t in range(horizon):
            target = (1 - lam) * sum(lam ** (n - 1) * n_step_return(t, n) for n in range(1, horizon - t)) \
                + lam ** (horizon - t - 1) * n_step_return(t, horizon - t)
            weights = weights + alpha * (target - weights @ features[t]) * features[t]
        weights_at.append(weights)
    return weights_at[1:]


@pytest.mark.parametrize("terminated", [True, False], ids=["terminated", "truncated"])
def test_true_online_equals_the_online_lambda_return_algorithm_at_every_step(terminated):
    """The equivalence that defines true online TD(lambda) (van Seijen et al. 2016; Section 12.5), with dense
    overlapping features, a large step and, when truncated, a bootstrap from the last state's value."""
    rng = np.random.default_rng(7)
    features, rewards = random_episode(rng, 7, 3, terminated)
    start, alpha, gamma, lam = rng.normal(size=3), 0.3, 0.9, 0.7
    true_online = run_online(td_lambda.true_online_td_lambda_step, start.copy(), features, rewards, alpha, gamma, lam)
    brute_force = online_lambda_return_weights(start, features, rewards, alpha, gamma, lam)
    for t, (ours, expected) in enumerate(zip(true_online, brute_force)):
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10, err_msg=f"after step {t + 1}")
    # and TD(lambda) with accumulating traces is not the same algorithm
    accumulating = run_online(td_lambda.td_lambda_step, start.copy(), features, rewards, alpha, gamma, lam)
    assert np.abs(accumulating[-1] - brute_force[-1]).max() > 1e-3


# ---------------------------------------------------------------------------------------- off-line lambda-return
def test_offline_lambda_return_equals_true_online_when_each_state_is_visited_once():
    """Tabular states 0 -> 1 -> 2 -> 3 -> terminal: no update changes a value that a later one reads, so
    the online lambda-return algorithm (true online TD(lambda)) ends where the off-line one does."""
    rng = np.random.default_rng(11)
    features = np.vstack([np.eye(4), np.zeros(4)])  # x(S_4) = 0: terminal
    rewards, start = np.array([0.5, -1.0, 2.0, 1.0]), rng.normal(size=4)
    alpha, gamma, lam = 0.4, 0.9, 0.6
    true_online = run_online(td_lambda.true_online_td_lambda_step, start.copy(), features, rewards, alpha, gamma, lam)[-1]
    offline = start.copy()
    td_lambda.offline_lambda_return_update(offline, features[:4], rewards, features[4], alpha, gamma, lam)
    np.testing.assert_allclose(offline, true_online, rtol=0, atol=1e-12)
    # by hand for the last state: G^lambda_3 = R_4 = 1, so w_3 <- w_3 + 0.4 (1 - w_3)
    assert offline[3] == pytest.approx(start[3] + 0.4 * (1.0 - start[3]))
    assert np.abs(offline - start).min() > 1e-3  # every weight moved


def test_offline_lambda_return_by_hand_with_a_revisit():
    """States 0, 1, 0 then a termination, rewards 0, 0, 1, w = (0.5, 0.2), alpha 0.5, gamma 1, lambda 0.5.
    lambda-returns with the episode's weights: G_2 = 1; G_1 = 0 + 0.5 * v(0) + 0.5 * G_2 = 0.25 + 0.5 = 0.75;
    G_0 = 0 + 0.5 * v(1) + 0.5 * G_1 = 0.1 + 0.375 = 0.475. Then in order (Eq. 12.4): w_0 = 0.5 + 0.5 (0.475 - 0.5)
    = 0.4875; w_1 = 0.2 + 0.5 (0.75 - 0.2) = 0.475; w_0 = 0.4875 + 0.5 (1 - 0.4875) = 0.74375 (the current w_0,
    not the episode's 0.5, in the error; the episode's 0.5, not 0.4875, inside G_1)."""
    weights = np.array([0.5, 0.2])
    td_lambda.offline_lambda_return_update(weights, np.eye(2)[[0, 1, 0]], [0.0, 0.0, 1.0], np.zeros(2), 0.5, 1.0, 0.5)
    np.testing.assert_allclose(weights, [0.74375, 0.475], rtol=0, atol=1e-12)


def test_offline_lambda_one_is_every_visit_monte_carlo():
    """lambda = 1: G^lambda_t is the return G_t, and Eq. 12.4 applied in order is constant-alpha
    every-visit Monte Carlo, V(S_t) <- V(S_t) + alpha [G_t - V(S_t)] (Eq. 6.1), revisits included."""
    states, rewards = [2, 1, 2, 3, 2, 1], np.array([0.0, 1.0, -2.0, 0.5, 0.0, 3.0])
    alpha, gamma = 0.3, 0.9
    start = np.array([0.1, -0.4, 0.8, 0.3])
    weights = start.copy()
    td_lambda.offline_lambda_return_update(weights, np.eye(4)[states], rewards, np.zeros(4), alpha, gamma, 1.0)
    returns = [sum(gamma ** k * reward for k, reward in enumerate(rewards[t:])) for t in range(len(rewards))]
    values = start.copy()
    for state, episode_return in zip(states, returns):
        values[state] += alpha * (episode_return - values[state])
    np.testing.assert_allclose(weights, values, rtol=0, atol=1e-12)


def test_lambda_returns_bootstrap_from_the_final_state_only_after_a_truncation():
    """rewards (1, 0), gamma 0.9, lambda 0.5, v(S_1) = 0.5. Truncated with v(S_2) = 2: G_1 = 0 + 0.9 * 2 = 1.8,
    G_0 = 1 + 0.9 (0.5 * 0.5 + 0.5 * 1.8) = 2.035. Terminated (v(S_2) = 0): G_1 = 0, G_0 = 1.225."""
    np.testing.assert_allclose(td_lambda.lambda_returns([1.0, 0.0], [0.5, 2.0], 0.9, 0.5), [2.035, 1.8])
    np.testing.assert_allclose(td_lambda.lambda_returns([1.0, 0.0], [0.5, 0.0], 0.9, 0.5), [1.225, 0.0])


@pytest.mark.parametrize("method", METHODS)
def test_truncation_bootstraps_from_the_true_final_state(method, in_tmp):
    """One state paying 1 forever, cut by a 5-step time limit: v = 1 / (1 - 0.9) = 10. Treating the limit
    as a termination would give at most the 5-step return 4.1."""
    result = train_quietly(env_id=register_endless_reward_env(5), method=method, lam=0.8, gamma=0.9,
                           learning_rate=0.05, total_timesteps=5_000)
    assert result["weights"][0] == pytest.approx(10.0, abs=0.05)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [3, 2], ids=["terminated", "truncated"])
def test_train_matches_the_update_functions_with_fresh_traces_each_episode(method, steps, in_tmp):
    """Three countdown episodes through train() from loaded non-zero weights: states 0, 1, 2 then a
    termination (the time limit fires there too: the termination wins), or states 0, 1 and a time limit at
    state 2 (bootstrapped from its value 0.2). The weights are those of the update functions run on each
    episode with a fresh trace and V_old."""
    env_kwargs = json.dumps({"obs": "discrete", "length": 3})
    n_states = custom_envs.MAX_LENGTH + 1
    start = np.linspace(0.0, 2.0, n_states)  # v(S_0) = 0, v(S_1) = 0.1, v(S_2) = 0.2, ...
    np.savez(in_tmp / "start.npz", weights=start, args=json.dumps({"env_id": "Countdown-v0", "env_kwargs": env_kwargs}))
    result = train_quietly(env_id="Countdown-v0", env_kwargs=env_kwargs, max_episode_steps=steps, method=method,
                           lam=0.9, gamma=0.8, learning_rate=0.5, total_timesteps=3 * steps,
                           model_path=str(in_tmp / "start.npz"))
    features = np.eye(n_states)[:steps + 1]  # x(S_0)..x(S_T)
    if steps == 3:
        features[3] = 0.0  # terminal
    weights, rewards = start.copy(), [1.0] * steps
    for _ in range(3):
        if method == "offline_lambda_return":
            td_lambda.offline_lambda_return_update(weights, features[:steps], rewards, features[steps], 0.5, 0.8, 0.9)
        else:
            run_online(ONLINE_STEPS[method], weights, features, rewards, 0.5, 0.8, 0.9)
    assert result["episodic_returns"] == [float(steps)] * 3
    np.testing.assert_allclose(result["weights"], weights, rtol=0, atol=1e-12)
    assert np.abs(weights - start)[:steps].min() > 0.1  # it learned


@pytest.mark.parametrize("method", ["true_online", "offline_lambda_return"])
def test_a_nan_weight_stops_the_run_naming_the_quantity_and_step(method, in_tmp, capsys):
    model = in_tmp / "nan.npz"
    weights = np.zeros(21)
    weights[10] = np.nan  # the walk's start state
    np.savez(model, weights=weights, args=json.dumps({"env_id": td_lambda.WALK_ID, "env_kwargs": "{}"}))
    with pytest.raises(SystemExit) as exit_info:
        train_quietly(model_path=str(model), method=method)
    message = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(message.splitlines()) == 1
    assert ("the TD error became nan at step 1 " if method == "true_online" else "a weight became nan at step") in message


# ---------------------------------------------------------------------------------------- the random walk
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
def test_the_walks_true_values_solve_bellmans_equation_at_any_gamma(gamma):
    """v(s) = 0.5 (r_left + gamma v(s - 1)) + 0.5 (r_right + gamma v(s + 1)), the ends paying -1 and +1: what
    the RMS error is measured against, so that --gamma below 1 is measured against its own values."""
    values = td_lambda.RandomWalk().true_values(gamma)
    assert values.shape == (21,) and values[0] == values[20] == 0.0 and values[10] == pytest.approx(0.0, abs=1e-12)
    rewards_left, rewards_right = np.zeros(21), np.zeros(21)
    rewards_left[1], rewards_right[19] = -1.0, 1.0
    bellman = 0.5 * (rewards_left[1:20] + gamma * values[0:19]) + 0.5 * (rewards_right[1:20] + gamma * values[2:21])
    np.testing.assert_allclose(values[1:20], bellman, atol=1e-12)
    if gamma < 1:  # discounting shrinks every value toward 0
        assert np.all(np.abs(values[1:20]) < np.abs(td_lambda.RandomWalk().true_values()[1:20]) + 1e-12)


def test_random_walk_dynamics_and_true_values():
    env = td_lambda.RandomWalk()
    assert env.reset(seed=0)[0] == 10
    for _ in range(9):
        assert env.step(1)[1:3] == (0.0, False)
    assert env.step(1)[:3] == (20, 1.0, True)
    env.reset()
    for _ in range(9):
        env.step(0)
    assert env.step(0)[:3] == (0, -1.0, True)
    values = env.true_values()
    assert values.shape == (21,) and values[0] == values[20] == 0.0
    np.testing.assert_allclose(values[1:20], np.arange(-9, 10) / 10)
    assert env.render().shape == (td_lambda.CELL_PIXELS, 21 * td_lambda.CELL_PIXELS, 3)


@pytest.mark.parametrize("method", METHODS)
def test_alpha_zero_keeps_the_rms_error_of_zero_values(method, in_tmp):
    """All values stay 0: RMS over the 19 states = sqrt(2 (1 + 4 + ... + 81) / 100 / 19) = sqrt(0.3)."""
    result = train_quietly(method=method, learning_rate=0.0, total_episodes=3)
    assert len(result["rms_errors"]) == 3
    assert all(error == pytest.approx(math.sqrt(0.3), abs=1e-15) for error in result["rms_errors"])
    assert math.sqrt(0.3) == pytest.approx(0.5477, abs=1e-4)


@pytest.mark.learning
@pytest.mark.parametrize("method", METHODS)
def test_the_first_ten_walk_episodes_at_lambda_0_8(method, in_tmp):
    """The figures' measure at lambda 0.8, alpha 0.4 (near the best of Figures 12.3, 12.6, 12.8, ≈ 0.25):
    the mean RMS error of episodes 1-10 of each seed. Measured over seeds 1-5: 0.20-0.30 (means 0.23-0.26)."""
    means = [np.mean(train_quietly(method=method, lam=0.8, learning_rate=0.4, total_episodes=10, seed=seed)["rms_errors"])
             for seed in range(1, 6)]
    assert max(means) < 0.4 and np.mean(means) < 0.32, means


def test_the_random_walk_is_the_same_in_n_step_sarsa_py():
    """n_step_sarsa.py builds the same walk under the same id (each file stands alone, and whichever
    registers first serves both in one process): same spaces, dynamics, rewards and true values."""
    other = load_module("n_step_sarsa.py")
    ours, theirs = td_lambda.RandomWalk(), other.RandomWalk()
    assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space
    np.testing.assert_array_equal(ours.true_values(), theirs.true_values())
    for walk in (ours, theirs):
        walk.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        action = int(rng.integers(2))
        step_ours, step_theirs = ours.step(action), theirs.step(action)
        assert step_ours[:4] == step_theirs[:4]
        if step_ours[2]:
            assert ours.reset()[0] == theirs.reset()[0]
