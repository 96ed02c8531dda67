"""q_learning.py: the update rule, termination vs truncation, and learning on the toy-text envs."""

import os

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_module, register_endless_reward_env

ql = load_module("q_learning.py")


def test_update_matches_a_hand_computed_value():
    q_table = np.zeros((2, 2))
    q_table[0, 1] = 3.0
    q_table[1] = [5.0, -1.0]  # max_a Q(s', a) = 5
    alpha, gamma, reward = 0.1, 0.9, 0.0
    expected = 3.0 + alpha * (reward + gamma * 5.0 - 3.0)  # Eq. 6.8 by hand: 3 + 0.1 * (4.5 - 3) = 3.15
    td_error = ql.q_learning_update(q_table, 0, 1, reward, 1, False, alpha, gamma)
    assert q_table[0, 1] == pytest.approx(expected) == pytest.approx(3.15)
    assert td_error == pytest.approx(1.5)
    assert q_table[1].tolist() == [5.0, -1.0] and q_table[0, 0] == 0.0  # nothing else moved


def test_target_drops_the_bootstrap_only_on_termination():
    next_q = np.array([2.0, 4.0])
    assert ql.td_target(1.0, next_q, terminated=True, gamma=0.5) == 1.0
    assert ql.td_target(1.0, next_q, terminated=False, gamma=0.5) == 1.0 + 0.5 * 4.0


def test_epsilon_schedule_is_linear_then_flat():
    assert ql.linear_schedule(1.0, 0.05, 100, 0) == 1.0
    assert ql.linear_schedule(1.0, 0.05, 100, 50) == pytest.approx(0.525)
    assert ql.linear_schedule(1.0, 0.05, 100, 100) == pytest.approx(0.05)
    assert ql.linear_schedule(1.0, 0.05, 100, 10_000) == pytest.approx(0.05)


def test_greedy_ties_are_broken_at_random_and_epsilon_explores():
    rng = np.random.default_rng(0)
    greedy = {ql.epsilon_greedy(np.array([1.0, 1.0, 0.0]), 0.0, rng) for _ in range(100)}
    assert greedy == {0, 1}
    explored = {ql.epsilon_greedy(np.array([1.0, 0.0, 0.0]), 1.0, rng) for _ in range(100)}
    assert explored == {0, 1, 2}


def test_truncation_bootstraps_so_the_value_is_the_infinite_horizon_one(in_tmp):
    gamma = 0.9
    result = ql.train(ql.Args(env_id=register_endless_reward_env(), total_timesteps=2_000, gamma=gamma,
                              learning_rate=0.5, eval_episodes=1))
    assert result["q_table"][0, 0] == pytest.approx(1.0 / (1.0 - gamma), rel=1e-3)
    # Treating the time limit as a termination has the fixed point Q = 1 + gamma * (4/5) Q = 3.57,
    # below even the 5-step return (1 - gamma^5) / (1 - gamma) = 4.10.
    assert result["q_table"][0, 0] > (1 - gamma**5) / (1 - gamma) + 1.0
    assert os.path.dirname(result["run_dir"]) == "runs", "a namespaced env id must not nest the run folder"


def test_envs_without_a_time_limit_get_one(in_tmp):
    env = ql.make_env(ql.Args(env_id="CliffWalking-v1"))
    assert env.spec.max_episode_steps == ql.FALLBACK_TIME_LIMIT
    env = ql.make_env(ql.Args(env_id="FrozenLake-v1", max_episode_steps=7, env_kwargs='{"map_name": "8x8"}'))
    assert env.spec.max_episode_steps == 7 and env.observation_space.n == 64


@pytest.mark.learning
@pytest.mark.parametrize("env_id, extra, eval_episodes, threshold", [
    ("FrozenLake-v1", dict(env_kwargs='{"is_slippery": false}', total_timesteps=20_000), 10, 1.0),
    # The optimal policy succeeds on 73.4% of these 1000 seeded evaluation episodes (value iteration).
    ("FrozenLake-v1", dict(total_timesteps=200_000), 1000, 0.70),
    ("Taxi-v4", dict(total_timesteps=200_000), 100, 7.0),
    ("CliffWalking-v1", dict(total_timesteps=50_000), 10, -13.0),
])
def test_learns_the_toy_text_envs(in_tmp, env_id, extra, eval_episodes, threshold):
    result = ql.train(ql.Args(env_id=env_id, eval_episodes=eval_episodes, **extra))
    assert np.mean(result["eval_returns"]) >= threshold
