"""double_q_learning.py: Eq. 6.10 by hand, the coin flip, termination vs truncation, the action mask, the
Example 6.7 env, and Figure 6.5's behaviour (Q-learning's maximisation bias, Double Q-learning without it)."""

import csv
import os

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_module, register_endless_reward_env

dq = load_module("double_q_learning.py")
ql = load_module("q_learning.py")
A, B, TERMINAL = 0, 1, 2  # the states of Example 6.7
LEFT, RIGHT = 0, 1  # the actions in A


def test_double_update_moves_one_table_toward_the_other_tables_value_at_its_own_argmax():
    q_tables = np.zeros((2, 2, 3))
    q_tables[0, 0, 1] = 3.0
    q_tables[0, 1] = [5.0, 1.0, -1.0]  # Q1's argmax in s' is action 0 ...
    q_tables[1, 1] = [2.0, 7.0, 0.0]  # ... where Q2 says 2 (Q-learning would use 5 or 7)
    before = q_tables.copy()
    alpha, gamma, reward = 0.1, 0.9, 0.5
    td_error = dq.double_q_learning_update(q_tables[0], q_tables[1], 0, 1, reward, 1, False, None, alpha, gamma,
                                           np.random.default_rng(0))
    # Eq. 6.10 by hand: 3 + 0.1 * (0.5 + 0.9 * 2 - 3) = 3 + 0.1 * (-0.7) = 2.93
    assert q_tables[0, 0, 1] == pytest.approx(2.93) and td_error == pytest.approx(-0.7)
    before[0, 0, 1] = q_tables[0, 0, 1]
    assert np.array_equal(q_tables, before), "only Q1(S, A) may move"
    # The symmetric update: Q2 picks action 1 in s', Q1 values it at 1: 0 + 0.1 * (0.5 + 0.9 * 1 - 0) = 0.14
    dq.double_q_learning_update(q_tables[1], q_tables[0], 0, 1, reward, 1, False, None, alpha, gamma,
                                np.random.default_rng(0))
    assert q_tables[1, 0, 1] == pytest.approx(0.14) and q_tables[0, 0, 1] == pytest.approx(2.93)


def test_one_table_in_both_roles_is_q_learning():
    """Eq. 6.10 with Q1 = Q2 is Eq. 6.8: the same update as q_learning.py's, on random tables."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        table = rng.normal(size=(4, 3))
        reference = table.copy()
        obs, action, next_obs = rng.integers(4), rng.integers(3), rng.integers(4)
        terminated, reward = bool(rng.integers(2)), rng.normal()
        dq.double_q_learning_update(table, table, obs, action, reward, next_obs, terminated, None, 0.3, 0.9, rng)
        ql.q_learning_update(reference, obs, action, reward, next_obs, terminated, 0.3, 0.9)
        assert np.allclose(table, reference)


def test_the_coin_flip_picks_each_table_about_half_the_time_and_returns_views():
    q_tables = np.zeros((2, 2, 2))
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(1000):
        q_update, q_other = dq.choose_tables(q_tables, rng)
        q_update[0, 0] += 1.0  # writes through to q_tables
        picks.append(q_update is not q_other and np.shares_memory(q_other, q_tables[1]))
    assert q_tables[:, 0, 0].sum() == 1000
    assert 450 <= q_tables[0, 0, 0] <= 550, q_tables[:, 0, 0]  # Binomial(1000, 1/2): within 3.2 sd
    assert sum(picks) == q_tables[0, 0, 0]  # Q2 is the evaluator exactly when Q1 is updated


def test_only_termination_drops_the_bootstrap():
    q_tables = np.zeros((2, 2, 2))
    q_tables[:, 1] = [[4.0, 1.0], [6.0, 3.0]]
    for terminated, expected in ((True, 1.0), (False, 1.0 + 0.5 * 6.0)):  # Q2(s', argmax Q1(s')) = Q2(s', 0) = 6
        table = q_tables.copy()
        dq.double_q_learning_update(table[0], table[1], 0, 0, 1.0, 1, terminated, None, 1.0, 0.5, None)
        assert table[0, 0, 0] == pytest.approx(expected)


def test_truncation_bootstraps_so_both_tables_reach_the_infinite_horizon_value(in_tmp):
    gamma = 0.9
    result = dq.train(dq.Args(env_id=register_endless_reward_env(), total_timesteps=2_000, gamma=gamma,
                              learning_rate=0.5, start_e=1.0, end_e=0.05, eval_episodes=1))
    assert result["q_tables"][:, 0, 0] == pytest.approx([1.0 / (1.0 - gamma)] * 2, rel=1e-3)


def test_the_action_mask_limits_exploration_greed_and_the_bootstrap():
    rng = np.random.default_rng(0)
    mask = np.array([1, 1, 0, 0], dtype=np.int8)  # state A: only left and right
    q_values = np.array([0.0, 0.0, 9.0, 9.0])  # the masked actions look best
    explored = [dq.epsilon_greedy(q_values, 1.0, rng, mask) for _ in range(4000)]
    assert set(explored) == {LEFT, RIGHT}
    assert np.mean(np.array(explored) == LEFT) == pytest.approx(0.5, abs=0.025)  # a random policy: left half the time
    assert {dq.epsilon_greedy(q_values, 0.0, rng, mask) for _ in range(100)} == {LEFT, RIGHT}  # a tie among allowed
    assert dq.greedy_action(np.array([1.0, 2.0, 9.0, 2.0]), mask, rng=None) == 1
    # The bootstrap: Q1's argmax over s''s allowed actions is 1 (not 2), so the target is Q2(s', 1) = 5.
    q_tables = np.zeros((2, 2, 4))
    q_tables[0, 1] = [1.0, 2.0, 9.0, 0.0]
    q_tables[1, 1] = [0.0, 5.0, -7.0, 0.0]
    dq.double_q_learning_update(q_tables[0], q_tables[1], 0, 0, 0.0, 1, False, mask, 1.0, 1.0, rng)
    assert q_tables[0, 0, 0] == 5.0


def test_the_maximization_bias_env_follows_example_6_7(in_tmp):
    env = dq.make_env(dq.Args(env_kwargs='{"n_b_actions": 100}'))
    obs, info = env.reset(seed=0)
    assert obs == A and env.action_space.n == 100 and info["action_mask"].tolist() == [1, 1] + [0] * 98
    assert env.step(RIGHT)[:4] == (TERMINAL, 0.0, True, False)
    with pytest.raises(ValueError, match="masked out"):
        env.reset()
        env.step(5)
    rng, rewards = np.random.default_rng(0), []
    for _ in range(4000):
        env.reset()
        obs, reward, terminated, _, info = env.step(LEFT)
        assert (obs, reward, terminated, info["action_mask"].sum()) == (B, 0.0, False, 100)
        obs, reward, terminated, _, _ = env.step(int(rng.integers(100)))
        assert obs == TERMINAL and terminated
        rewards.append(reward)
    assert np.mean(rewards) == pytest.approx(-0.1, abs=0.05) and np.std(rewards) == pytest.approx(1.0, abs=0.05)


def first_episodes(seed: int, episodes: int, single_table: bool) -> tuple:
    """Example 6.7 with train()'s default arguments, built from the script's own pieces in train()'s order
    of random draws; returns the episodes' lengths and returns. single_table: Q1 and Q2 are one table, so
    Eq. 6.10 is Eq. 6.8 and this is Q-learning (see test_one_table_in_both_roles_is_q_learning); the script
    has no such switch, and q_learning.py cannot run this env (it ignores the action mask)."""
    args = dq.Args(seed=seed)
    assert args.start_e == args.end_e, "Figure 6.5 uses a constant epsilon"
    env, rng = dq.make_env(args), np.random.default_rng(seed)
    q_tables = np.zeros((2, env.observation_space.n, env.action_space.n))
    obs, info = env.reset(seed=seed)
    lengths, returns, length, episode_return = [], [], 0, 0.0
    while len(lengths) < episodes:
        q_values = q_tables[0, obs] if single_table else q_tables[0, obs] + q_tables[1, obs]
        action = dq.epsilon_greedy(q_values, args.start_e, rng, info["action_mask"])
        next_obs, reward, terminated, truncated, info = env.step(action)
        q_update, q_other = (q_tables[0], q_tables[0]) if single_table else dq.choose_tables(q_tables, rng)
        dq.double_q_learning_update(q_update, q_other, obs, action, reward, next_obs, terminated,
                                    info["action_mask"], args.learning_rate, args.gamma, rng)
        obs, length, episode_return = next_obs, length + 1, episode_return + reward
        if terminated or truncated:
            lengths.append(length)
            returns.append(episode_return)
            (obs, info), length, episode_return = env.reset(), 0, 0.0
    return np.array(lengths), np.array(returns)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_figure_loop_is_train_itself(in_tmp, seed):
    """The loop the behaviour test uses reproduces train()'s episodes exactly, so the Q-learning side
    differs from train() only in sharing one table."""
    result = dq.train(dq.Args(seed=seed, eval_episodes=1))
    with open(os.path.join(result["run_dir"], "episodes.csv")) as file:
        trained_lengths = [int(row["episode_length"]) for row in csv.DictReader(file)]
    lengths, returns = first_episodes(seed, len(trained_lengths), single_table=False)
    assert lengths.tolist() == trained_lengths and len(trained_lengths) > 250
    assert returns.tolist() == result["episodic_returns"]


@pytest.mark.learning
def test_figure_6_5_q_learning_is_biased_to_the_left_double_q_learning_is_not():
    """Figure 6.5: the share of episodes that go left from A (length 2), episodes 51-100 of 200 runs.
    Right is optimal, so an epsilon-greedy (0.1) optimal policy goes left 5% of the time. Measured:
    Q-learning 0.68, Double Q-learning 0.10 (an independent implementation of the book's code agrees)."""
    runs, episodes = range(200), 100
    q_learning = np.mean([first_episodes(seed, episodes, True)[0][50:] == 2 for seed in runs])
    double_q = np.mean([first_episodes(seed, episodes, False)[0][50:] == 2 for seed in runs])
    assert q_learning > 0.5, q_learning  # ten times the optimal 5%
    assert double_q < 0.15, double_q  # the 5% optimum plus the estimates' noise, which Q-learning also has
    assert q_learning - 0.05 > 5 * (double_q - 0.05)


@pytest.mark.learning
def test_learns_deterministic_frozen_lake_with_q_learning_settings(in_tmp):
    """The toy-text envs work as in q_learning.py (its settings; 10k steps already pass seeds 1-3)."""
    result = dq.train(dq.Args(env_id="FrozenLake-v1", env_kwargs='{"is_slippery": false}', total_timesteps=20_000,
                              gamma=0.99, start_e=1.0, end_e=0.05))
    assert np.mean(result["eval_returns"]) == 1.0
