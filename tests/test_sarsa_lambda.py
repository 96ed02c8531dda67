"""sarsa_lambda.py: the tile coder, the SARSA(λ) updates with accumulating and replacing traces by hand,
true online SARSA(λ) against the online λ-return algorithm it is defined to equal, truncation vs
termination in the loop, and Mountain Car (Sutton & Barto 2018, §10.1, §12.7–12.8)."""

import contextlib
import io

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_module

sl = load_module("sarsa_lambda.py")


def quiet_train(**kwargs) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return sl.train(sl.Args(**kwargs))


# ---------------------------------------------------------------------------------------- tile coder
def unit_coder(num_tilings=8, tiles_per_dim=4, dims=2, memory_size=1 << 20):
    """Tiles over [0, 1]^dims; a memory large enough that no two of the few keys used here collide."""
    return sl.TileCoder(np.zeros(dims), np.ones(dims), num_tilings, tiles_per_dim, memory_size)


def test_the_same_point_always_gets_the_same_tiles_one_per_tiling():
    coder = unit_coder()
    point = np.array([0.31, 0.77])
    tiles = coder.tiles(point)
    assert tiles.shape == (8,) and len(set(tiles.tolist())) == 8  # one active tile in each tiling
    np.testing.assert_array_equal(coder.tiles(point.copy()), tiles)
    np.testing.assert_array_equal(unit_coder().tiles(point), tiles)  # a fixed hash: a new coder agrees


@pytest.mark.parametrize("dimension", [0, 1])
@pytest.mark.parametrize("k", range(9))
def test_moving_k_eighths_of_a_tile_changes_exactly_k_of_8_tiles(dimension, k):
    """With the asymmetric offsets t * (1, 3) / 8, each axis sees the offsets 0, 1/8, ..., 7/8 of a tile,
    so shared tiles fall linearly with distance: a move of k/8 of a tile leaves 8 - k tiles shared."""
    coder = unit_coder()
    tile_width = 1.0 / 4
    rng = np.random.default_rng(k + 10 * dimension)
    for _ in range(20):
        point = rng.uniform(0.1, 0.5, size=2)
        moved = point.copy()
        moved[dimension] += k / 8 * tile_width + 1e-9  # just past the boundary a generic point would cross
        shared = len(set(coder.tiles(point).tolist()) & set(coder.tiles(moved).tolist()))
        assert shared == 8 - k


def test_offsets_are_the_books_asymmetric_displacements():
    coder = unit_coder(num_tilings=4, dims=3)
    np.testing.assert_allclose(coder.offsets, [[0, 0, 0], [1 / 4, 3 / 4, 5 / 4], [2 / 4, 6 / 4, 10 / 4],
                                               [3 / 4, 9 / 4, 15 / 4]])


def test_hashed_indices_stay_in_range_and_spread_over_memory():
    coder = sl.TileCoder(np.array([-1.2, -0.07]), np.array([0.6, 0.07]), 8, 8, memory_size=4096)
    rng = np.random.default_rng(0)
    # points inside the box and far outside it (negative and huge coordinates)
    points = np.vstack([rng.uniform([-1.2, -0.07], [0.6, 0.07], size=(2000, 2)), rng.normal(0, 50, size=(200, 2))])
    indices = np.concatenate([coder.tiles(point) for point in points])
    assert indices.min() >= 0 and indices.max() < 4096
    # the 8 x 9 x 9 = 648 tiles of the box hash into 4096 cells with few collisions (expected ≈ 48 pairs)
    inside = {tuple(coder.tiles(point)) for point in points[:2000]}
    distinct_indices = {index for tiles in inside for index in tiles}
    assert len(distinct_indices) > 550


def test_unbounded_dimensions_get_a_default_box_and_overrides_win():
    cartpole = gym.make("CartPole-v1")
    low, high = sl.tiling_box(cartpole.observation_space, sl.Args(env_id="CartPole-v1"))
    np.testing.assert_allclose(low, [-4.8, -sl.UNBOUNDED_RANGE, -0.41887903, -sl.UNBOUNDED_RANGE], rtol=1e-6)
    np.testing.assert_allclose(high, [4.8, sl.UNBOUNDED_RANGE, 0.41887903, sl.UNBOUNDED_RANGE], rtol=1e-6)
    low, high = sl.tiling_box(cartpole.observation_space, sl.Args(obs_low=(-1, -2, -3, -4), obs_high=(1, 2, 3, 4)))
    assert low.tolist() == [-1, -2, -3, -4] and high.tolist() == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------- updates by hand
@pytest.mark.parametrize("trace, by_hand", [
    # step 1: z = [1, 1] on action 0's tiles {0, 1}; delta 1 -> w[0, 0:2] = 0.1
    # step 2: z = 0.5 z, then tile 1 (active again) gets +1 (accumulating: 1.5) or is set to 1 (replacing),
    #         tile 2 gets 1; delta -2 -> w[0] = [0.1 - 0.2*0.5, 0.1 - 0.2*z1, -0.2]
    ("accumulating", [0.0, 0.1 - 0.2 * 1.5, -0.2]),
    ("replacing", [0.0, 0.1 - 0.2 * 1.0, -0.2]),
])
def test_sarsa_lambda_update_by_hand(trace, by_hand):
    weights, traces = np.zeros((2, 3)), np.zeros((2, 3))
    sl.sarsa_lambda_update(weights, traces, 0, np.array([0, 1]), 1.0, 0.1, 0.5, trace)
    np.testing.assert_allclose(weights[0], [0.1, 0.1, 0.0])
    sl.sarsa_lambda_update(weights, traces, 0, np.array([1, 2]), -2.0, 0.1, 0.5, trace)
    np.testing.assert_allclose(weights[0], by_hand)
    assert not weights[1].any() and not traces[1].any()  # the other action's weights never move


def test_lambda_zero_is_one_step_semi_gradient_sarsa():
    """With lambda 0 the trace is the current features only: w += alpha delta x (Eq. 10.1)."""
    weights, traces = np.zeros((2, 4)), np.zeros((2, 4))
    sl.sarsa_lambda_update(weights, traces, 1, np.array([0, 3]), 2.0, 0.25, 0.0, "accumulating")
    sl.sarsa_lambda_update(weights, traces, 1, np.array([1, 2]), 4.0, 0.25, 0.0, "accumulating")
    np.testing.assert_allclose(weights[1], [0.5, 1.0, 1.0, 0.5])


def random_episode(rng, steps=6, n_actions=2, memory=5):
    """A fixed trajectory of (action, active tiles, reward) with overlapping binary features; it terminates."""
    return [(int(rng.integers(n_actions)), rng.choice(memory, size=2, replace=False), float(rng.normal()))
            for _ in range(steps)]


def features(action, tiles, shape) -> np.ndarray:
    x = np.zeros(shape)
    x[action, tiles] = 1.0
    return x


def true_online_weights(episode, shape, alpha, gamma, lam) -> list:
    """Runs the script's true_online_update along the episode as train() does; the weights after each step."""
    weights, traces, q_old, history = np.zeros(shape), np.zeros(shape), 0.0, []
    for t, (action, tiles, reward) in enumerate(episode):
        q_now = weights[action, tiles].sum()
        q_next = 0.0 if t == len(episode) - 1 else weights[episode[t + 1][0], episode[t + 1][1]].sum()
        delta = reward + gamma * q_next - q_now
        sl.true_online_update(weights, traces, action, tiles, delta, q_now, q_old, alpha, gamma * lam)
        q_old = q_next
        history.append(weights.copy())
    return history


def online_lambda_return_weights(episode, shape, alpha, gamma, lam) -> list:
    """The online lambda-return algorithm (§12.4) by brute force: at each horizon h the whole sweep
    t = 0..h-1 is redone from the initial weights toward the truncated lambda-returns G^lambda_{t:h}
    (Eq. 12.9), whose n-step returns bootstrap with w_{t+n-1}, the last weights of horizon t+n-1."""
    xs = [features(action, tiles, shape) for action, tiles, _ in episode]
    rewards = [reward for _, _, reward in episode]
    T = len(episode)
    final = [np.zeros(shape)]  # final[h] = w_h^h

    def value(k, weights):  # q of the k-th state-action under weights; 0 at the terminal time T
        return 0.0 if k == T else float((weights * xs[k]).sum())

    for h in range(1, T + 1):
        weights = np.zeros(shape)
        for t in range(h):
            def n_step(n):  # G_{t:t+n}, bootstrapping from w_{t+n-1}
                g = sum(gamma ** i * rewards[t + i] for i in range(n))
                return g + gamma ** n * value(t + n, final[t + n - 1])  # value(T, .) is 0: a termination
            horizon = h - t
            lambda_return = (1 - lam) * sum(lam ** (n - 1) * n_step(n) for n in range(1, horizon)) + \
                lam ** (horizon - 1) * n_step(horizon)
            weights = weights + alpha * (lambda_return - value(t, weights)) * xs[t]
        final.append(weights)
    return final[1:]


@pytest.mark.parametrize("seed", range(5))
def test_true_online_sarsa_lambda_equals_the_online_lambda_return_algorithm(seed):
    """The equivalence that defines true online TD(lambda) (van Seijen & Sutton 2014; S&B §12.5):
    its weights after every step are those of the online lambda-return algorithm, here with
    overlapping features so that the traces and the dutch correction matter."""
    rng = np.random.default_rng(seed)
    episode, shape = random_episode(rng), (2, 5)
    alpha, gamma, lam = 0.3, 0.9, 0.8
    for ours, brute in zip(true_online_weights(episode, shape, alpha, gamma, lam),
                           online_lambda_return_weights(episode, shape, alpha, gamma, lam)):
        np.testing.assert_allclose(ours, brute, atol=1e-12)


def test_tilings_that_hash_to_one_weight_make_one_feature_and_true_online_stays_exact():
    """8 tilings hashed into 3 weights must collide: each weight is then one binary feature, as the
    updates treat it (they write an index once), so q is the features' dot product with the weights
    and true online SARSA(lambda) still equals the online lambda-return algorithm with tile-coded states."""
    coder = sl.TileCoder(np.zeros(1), np.ones(1), 8, 4, memory_size=3)
    rng = np.random.default_rng(0)
    episode = []
    for _ in range(6):
        tiles = coder.tiles(rng.uniform(0, 1, size=1))
        assert len(tiles) < 8 and len(set(tiles.tolist())) == len(tiles)
        episode.append((int(rng.integers(2)), tiles, float(rng.normal())))
    for ours, brute in zip(true_online_weights(episode, (2, 3), 0.1, 0.9, 0.8),
                           online_lambda_return_weights(episode, (2, 3), 0.1, 0.9, 0.8)):
        np.testing.assert_allclose(ours, brute, atol=1e-12)


def test_true_online_equals_the_offline_lambda_return_at_the_end_of_a_no_revisit_episode():
    """On a tabular episode that visits each state once, bootstrap targets only read states not yet
    updated, so the online and off-line lambda-return algorithms coincide at the episode's end: each
    visited value moves by alpha (G^lambda_t - 0) from its initial 0 (Eq. 12.4)."""
    rewards, alpha, gamma, lam = [1.0, -2.0, 0.5, 3.0], 0.4, 0.9, 0.7
    episode = [(0, np.array([t]), reward) for t, reward in enumerate(rewards)]  # state t has tile t
    final = true_online_weights(episode, (1, 4), alpha, gamma, lam)[-1]
    # off-line lambda-returns with all values 0 during the episode: G^lambda_t = R_{t+1} + gamma lam G^lambda_{t+1}
    lambda_returns, g = [], 0.0
    for reward in reversed(rewards):
        g = reward + gamma * lam * g
        lambda_returns.insert(0, g)
    np.testing.assert_allclose(final[0], alpha * np.array(lambda_returns), atol=1e-12)


# ---------------------------------------------------------------------------------------- the loop
class ConstantObsEnv(gym.Env):
    """One observation, reward 1 per step; never terminates (or terminates at `terminate_at`)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(1)

    def __init__(self, render_mode=None, terminate_at=None):
        self.render_mode, self.terminate_at, self.t = render_mode, terminate_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.5], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([0.5], np.float32), 1.0, self.t == self.terminate_at, False, {}


@pytest.mark.parametrize("flags", [dict(true_online=True, lam=0.9), dict(true_online=False, lam=0.0),
                                   dict(true_online=False, lam=0.9, trace="replacing")])
@pytest.mark.parametrize("terminate_at, value", [
    (None, 10.0),  # truncated every 5 steps but never terminated: q = 1 / (1 - 0.9)
    (5, None),     # terminated at step 5: the value of the constant state is a mix of 5..1-step returns
])
def test_truncation_bootstraps_and_termination_does_not(flags, terminate_at, value, in_tmp):
    env_id = f"LucidRL/ConstantObs{terminate_at}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=ConstantObsEnv, max_episode_steps=5, kwargs={"terminate_at": terminate_at})
    result = quiet_train(env_id=env_id, total_timesteps=4000, learning_rate=0.05, gamma=0.9, eval_episodes=1, **flags)
    q = result["weights"][0, result["coder"].tiles(np.array([0.5]))].sum()
    if value is not None:
        assert q == pytest.approx(value, rel=0.03)
    else:
        # the state appears at steps 1..5 of each episode; returns from there are (1 - 0.9^k) / 0.1, k = 5..1
        assert 1.0 < q < 4.1


# ---------------------------------------------------------------------------------------- Mountain Car
@pytest.mark.learning
def test_true_online_sarsa_lambda_solves_mountain_car(in_tmp):
    """The practical bar of §10.1/§12.7 on MountainCar-v0 (200-step limit): greedy evaluation better
    than -115 (dqn.py stays near -181 at 500k steps). Default arguments, a shorter budget, seed 1."""
    result = quiet_train(total_timesteps=50_000, eval_episodes=30)
    assert np.mean(result["eval_returns"]) > -115


@pytest.mark.learning
def test_accumulating_traces_lag_replacing_ones_at_a_large_step_size(in_tmp):
    """Figure 12.10/12.11's point at alpha = 0.5/8, lambda 0.9, no time limit: replacing traces finish
    Mountain Car's first 30 episodes in under 10k steps (≈ 270 per episode); accumulating ones, whose
    traces pile up on revisited tiles, have not finished them after twice that."""
    episodes = {}
    for trace in ("replacing", "accumulating"):
        result = quiet_train(true_online=False, trace=trace, total_episodes=30, max_episode_steps=5000,
                             total_timesteps=20_000, eval_episodes=1)
        episodes[trace] = len(result["episodic_returns"]), -sum(result["episodic_returns"])
    assert episodes["replacing"][0] == 30 and episodes["replacing"][1] < 10_000, episodes
    assert episodes["accumulating"][0] < 30, episodes
