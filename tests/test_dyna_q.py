"""dyna_q.py: the direct and planning updates, the model, n = 0 is Q-learning, termination vs truncation,
the Dyna maze, and Figure 8.2 (planning speeds learning up)."""

import csv
import os

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_module, register_endless_reward_env

dq = load_module("dyna_q.py")
ql = load_module("q_learning.py")


def test_direct_update_matches_a_hand_computed_value():
    q_table = np.zeros((2, 2))
    q_table[0, 1] = 3.0
    q_table[1] = [5.0, -1.0]  # max_a Q(s', a) = 5
    td_error = dq.q_learning_update(q_table, 0, 1, 0.0, 1, False, 0.1, 0.9)
    assert q_table[0, 1] == pytest.approx(3.15)  # 3 + 0.1 * (0 + 0.9 * 5 - 3), step (d)
    assert td_error == pytest.approx(1.5)
    assert q_table[1].tolist() == [5.0, -1.0] and q_table[0, 0] == 0.0


def test_one_planning_update_matches_a_hand_computed_value():
    q_table = np.zeros((3, 2))
    q_table[0, 1], q_table[2] = 1.0, [4.0, 2.0]
    model = dq.Model(3, 2)
    model.update(0, 1, 0.5, 2, False)  # the only observed pair, so planning must pick it
    dq.planning(q_table, model, 1, 0.5, 0.9, np.random.default_rng(0))
    assert q_table[0, 1] == pytest.approx(1.0 + 0.5 * (0.5 + 0.9 * 4.0 - 1.0))  # = 2.55, step (f)
    q_table[0, 1] = 1.0
    model.update(0, 1, 0.5, 2, True)  # the same pair, now seen to terminate: no bootstrap
    dq.planning(q_table, model, 1, 0.5, 0.9, np.random.default_rng(0))
    assert q_table[0, 1] == pytest.approx(1.0 + 0.5 * (0.5 - 1.0))
    assert q_table[2].tolist() == [4.0, 2.0] and q_table[0, 0] == 0.0 and q_table[1].tolist() == [0.0, 0.0]


def test_the_model_stores_the_latest_outcome_and_planning_only_draws_observed_pairs():
    model = dq.Model(5, 3)
    model.update(4, 2, 1.0, 0, True)
    model.update(1, 0, -1.0, 3, False)
    model.update(4, 2, 2.0, 1, False)  # seen again: a deterministic model keeps the latest outcome
    assert model.n_observed == 2 and model.observed.sum() == 2 and model.observed[4, 2] and model.observed[1, 0]
    assert (model.rewards[4, 2], model.next_obs[4, 2], model.terminations[4, 2]) == (2.0, 1, False)
    assert (model.rewards[1, 0], model.next_obs[1, 0], model.terminations[1, 0]) == (-1.0, 3, False)
    pairs = model.sample(10_000, np.random.default_rng(0))
    assert pairs.shape == (10_000, 2)
    assert {tuple(pair) for pair in pairs.tolist()} == {(4, 2), (1, 0)}
    assert abs((pairs[:, 0] == 4).mean() - 0.5) < 0.02  # uniform over the observed pairs
    q_table = np.zeros((5, 3))
    dq.planning(q_table, model, 200, 0.1, 0.9, np.random.default_rng(1))
    changed = {tuple(index) for index in np.argwhere(q_table != 0).tolist()}
    assert changed == {(4, 2), (1, 0)}, "planning updated a pair that was never observed"


def test_no_planning_is_exactly_q_learning():
    """Step by step: the same transitions give the same table as q_learning.py's update."""
    rng = np.random.default_rng(3)
    q_dyna, q_plain, model = np.zeros((6, 3)), np.zeros((6, 3)), dq.Model(6, 3)
    for _ in range(500):
        obs, action, next_obs = int(rng.integers(6)), int(rng.integers(3)), int(rng.integers(6))
        reward, terminated = float(rng.normal()), bool(rng.random() < 0.2)
        dq.q_learning_update(q_dyna, obs, action, reward, next_obs, terminated, 0.3, 0.9)
        model.update(obs, action, reward, next_obs, terminated)
        dq.planning(q_dyna, model, 0, 0.3, 0.9, rng)
        ql.q_learning_update(q_plain, obs, action, reward, next_obs, terminated, 0.3, 0.9)
    assert np.array_equal(q_dyna, q_plain)


def test_no_planning_trains_the_same_table_as_q_learning_py(in_tmp):
    """Whole runs: with n = 0 and q_learning.py's settings, every action and every update is the same."""
    common = dict(env_id="FrozenLake-v1", total_timesteps=5_000, learning_rate=0.2, gamma=0.99, start_e=1.0,
                  end_e=0.05, exploration_fraction=0.5, eval_episodes=1, seed=4)
    dyna = dq.train(dq.Args(planning_steps=0, **common))
    plain = ql.train(ql.Args(**common))
    assert np.array_equal(dyna["q_table"], plain["q_table"]) and dyna["q_table"].any()
    assert dyna["episodic_returns"] == plain["episodic_returns"]


def test_truncation_bootstraps_in_the_direct_update_and_in_the_model(in_tmp):
    gamma = 0.9
    result = dq.train(dq.Args(env_id=register_endless_reward_env(), total_timesteps=400, gamma=gamma,
                              learning_rate=0.5, planning_steps=5, eval_episodes=1))
    assert len(result["episodic_returns"]) == 80  # every episode was cut by the time limit
    assert result["q_table"][0, 0] == pytest.approx(1.0 / (1.0 - gamma), rel=1e-3)
    # A truncation stored as terminal has the fixed point below even the 5-step return 4.10.
    assert result["q_table"][0, 0] > (1 - gamma**5) / (1 - gamma) + 1.0


def test_the_maze_is_figure_8_2():
    env = dq.make_env(dq.Args())
    assert env.spec.id == dq.MAZE_ID and env.spec.max_episode_steps == dq.MAZE_TIME_LIMIT
    maze = env.unwrapped
    obs, _ = env.reset(seed=0)
    assert obs == 2 * 9 + 0 and (env.observation_space.n, env.action_space.n) == (54, 4)
    assert env.step(3)[:4] == (19, 0.0, False, False)  # right
    assert env.step(3)[0] == 19  # into the wall at (2, 2): stays
    assert env.step(2)[0] == 18 and env.step(2)[0] == 18  # left, then off the grid: stays
    # Breadth-first search over the env's own step(): the shortest path from the start is 14 steps.
    distances, frontier = {18: 0}, [18]
    while frontier:
        state = frontier.pop(0)
        for action in range(4):
            maze.position = divmod(state, 9)
            next_state, reward, terminated, _, _ = maze.step(action)
            assert (reward, terminated) == ((1.0, True) if next_state == 8 else (0.0, False))
            if next_state not in distances:
                distances[next_state] = distances[state] + 1
                frontier.append(next_state)
    assert distances[8] == 14 and len(distances) == 54 - 7
    env = dq.make_env(dq.Args(), render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (6 * dq.CELL_PIXELS, 9 * dq.CELL_PIXELS, 3) and frame.dtype == np.uint8


def episode_lengths(run_dir: str) -> list:
    with open(os.path.join(run_dir, "episodes.csv")) as file:
        return [int(row["episode_length"]) for row in csv.DictReader(file)]


@pytest.mark.learning
def test_figure_8_2_planning_learns_the_maze_in_fewer_episodes(in_tmp):
    """Mean over seeds 1-5 of the steps of episodes 2-10 (measured: n = 0: 241, n = 5: 46, n = 50: 19).
    Episode 1 is the same random walk for every n (all Q = 0 until the goal is found)."""
    lengths = {}
    for n, budget in ((0, 6_000), (5, 3_000), (50, 3_000)):
        runs = [episode_lengths(dq.train(dq.Args(seed=seed, planning_steps=n, total_timesteps=budget,
                                                 eval_episodes=1))["run_dir"]) for seed in range(1, 6)]
        assert min(len(run) for run in runs) >= 10
        lengths[n] = np.array([run[:10] for run in runs])  # (seeds, episodes)
    assert (lengths[0][:, 0] == lengths[5][:, 0]).all() and (lengths[0][:, 0] == lengths[50][:, 0]).all()
    steps_2_to_10 = {n: lengths[n][:, 1:].mean() for n in lengths}
    assert steps_2_to_10[5] < steps_2_to_10[0] / 3
    assert steps_2_to_10[50] < steps_2_to_10[5]
    # n = 50 is near the shortest path (14) from episode 3 on: the book says it takes about three episodes.
    assert lengths[50][:, 2:].mean() < 20
    assert lengths[0][:, 2:].mean() > 100  # without planning, still far from it
