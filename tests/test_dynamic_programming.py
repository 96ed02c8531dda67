"""value_iteration.py and policy_iteration.py: the backups by hand, the same v* from both on the
toy-text envs (checked against an exact linear solve), and the optimal FrozenLake policy."""

import csv

import numpy as np
import pytest

from conftest import load_module

vi = load_module("value_iteration.py")
pi = load_module("policy_iteration.py")

# Two states, two actions. (0, 0) has two outcomes, every other (s, a) one, so the model is padded;
# (0, 1) terminates, so its target is the reward alone even though v(1) is large.
TINY_P = {
    0: {0: [(0.5, 0, 1.0, False), (0.5, 1, 0.0, False)], 1: [(1.0, 1, 2.0, True)]},
    1: {0: [(1.0, 0, -1.0, False)], 1: [(1.0, 1, 0.0, False)]},
}
TOY_TEXT = [("FrozenLake-v1", "{}"), ("FrozenLake-v1", '{"map_name": "8x8"}'), ("Taxi-v4", "{}"),
            ("CliffWalking-v1", "{}")]


def env_model(module, env_id="FrozenLake-v1", env_kwargs="{}"):
    env = module.make_env(module.Args(env_id=env_id, env_kwargs=env_kwargs))
    return module.tabulate_model(env.unwrapped.P, int(env.observation_space.n), int(env.action_space.n))


def exact_policy_values(model, policy, gamma):
    """v_pi by solving the linear Bellman equation (I - gamma P_pi) v = r_pi: no sweeps involved."""
    n_states = len(policy)
    states = np.arange(n_states)
    transition, expected_reward = np.zeros((n_states, n_states)), np.zeros(n_states)
    for k in range(model.probs.shape[-1]):
        probs = model.probs[states, policy, k]
        np.add.at(transition, (states, model.next_states[states, policy, k]), probs * model.not_done[states, policy, k])
        expected_reward += probs * model.rewards[states, policy, k]
    return np.linalg.solve(np.eye(n_states) - gamma * transition, expected_reward)


def read_iterations(run_dir):
    with open(f"{run_dir}/iterations.csv") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("module", [vi, pi])
def test_one_bellman_optimality_backup_by_hand(module):
    model = module.tabulate_model(TINY_P, 2, 2)
    assert model.probs.shape == (2, 2, 2) and model.probs[0, 1, 1] == 0.0  # the padding has probability 0
    values, gamma = np.array([10.0, 20.0]), 0.9
    q_values = module.expected_update(model, values, gamma)
    # q(0,0) = .5 (1 + .9*10) + .5 (0 + .9*20) = 14; q(0,1) = 2 (terminated: no bootstrap from v(1) = 20);
    # q(1,0) = -1 + .9*10 = 8; q(1,1) = 0 + .9*20 = 18.
    np.testing.assert_allclose(q_values, [[14.0, 2.0], [8.0, 18.0]])
    if module is vi:
        np.testing.assert_allclose(vi.bellman_optimality_backup(model, values, gamma), [14.0, 18.0])  # Eq. 4.10
        assert vi.greedy_policy(model, values, gamma).tolist() == [0, 1]


def test_one_policy_evaluation_sweep_by_hand():
    model = pi.tabulate_model(TINY_P, 2, 2)
    policy, values, gamma = np.array([1, 0]), np.array([10.0, 20.0]), 0.9
    # One sweep of Eq. 4.5, every state from the same old values: v(0) = 2 (terminates), v(1) = -1 + .9*10 = 8.
    swept, sweeps = pi.evaluate_policy(model, policy, values, gamma, theta=1e-12, max_sweeps=1)
    np.testing.assert_allclose(swept, [2.0, 8.0])
    assert sweeps == 1 and values.tolist() == [10.0, 20.0]  # the caller's array is not changed
    # To convergence: v_pi = (2, -1 + .9*2) = (2, 0.8), exact after two sweeps; the third sees no change.
    converged, sweeps = pi.evaluate_policy(model, policy, values, gamma, theta=1e-12, max_sweeps=100)
    np.testing.assert_allclose(converged, [2.0, 0.8])
    assert sweeps == 3


def test_improvement_is_greedy_but_keeps_the_old_action_on_ties():
    q_values = np.array([[1.0, 1.0], [0.0, 2.0], [5.0, 5.0 + 1e-12]])
    # state 0: a tie keeps action 1; state 1: action 1 is strictly better; state 2: 1e-12 is within tolerance
    assert pi.improve_policy(q_values, np.array([1, 0, 0]), tolerance=1e-9).tolist() == [1, 1, 0]
    assert pi.improve_policy(q_values, np.array([1, 0, 0]), tolerance=0.0).tolist() == [1, 1, 1]


@pytest.mark.parametrize("env_id, env_kwargs", TOY_TEXT)
def test_value_and_policy_iteration_reach_the_same_optimal_values(in_tmp, env_id, env_kwargs):
    planned = vi.train(vi.Args(env_id=env_id, env_kwargs=env_kwargs, eval_episodes=1))
    improved = pi.train(pi.Args(env_id=env_id, env_kwargs=env_kwargs, eval_episodes=1))
    assert planned["converged"] and improved["converged"]
    np.testing.assert_allclose(planned["values"], improved["values"], rtol=0, atol=1e-8)
    # both are v* of the policy iteration found, solved exactly (up to theta's gamma/(1-gamma) factor)
    model = env_model(vi, env_id, env_kwargs)
    exact = exact_policy_values(model, improved["policy"], 0.99)
    np.testing.assert_allclose(planned["values"], exact, rtol=0, atol=1e-8)
    # the same greedy policy up to ties: each action policy iteration chose is greedy in value iteration's q
    q_values = vi.expected_update(model, planned["values"], 0.99)
    chosen = q_values[np.arange(len(q_values)), improved["policy"]]
    np.testing.assert_allclose(chosen, q_values.max(axis=1), rtol=0, atol=1e-8)
    # policy iteration ends policy-stable after a handful of improvements (measured 7, 11, 17, 15)
    rows = read_iterations(improved["run_dir"])
    assert rows[-1]["policy_changes"] == "0" and int(rows[0]["policy_changes"]) > 0 and len(rows) <= 20
    assert float(read_iterations(planned["run_dir"])[-1]["delta"]) < vi.Args.theta


def test_terminal_states_have_zero_value_on_frozen_lake(in_tmp):
    """Holes and the goal loop to themselves with a terminated, zero-reward transition: V = 0 there,
    and no state's value bootstraps from them."""
    values = vi.train(vi.Args(env_kwargs='{"map_name": "8x8"}', eval_episodes=1))["values"]
    desc = "".join(vi.make_env(vi.Args(env_kwargs='{"map_name": "8x8"}')).unwrapped.desc.flatten().astype(str))
    terminal = np.array([cell in "HG" for cell in desc])
    assert (values[terminal] == 0.0).all() and (values[~terminal] > 0.0).all()


def test_a_loaded_model_is_the_starting_point(in_tmp):
    """A saved [V*; pi*] restarts value iteration one sweep from convergence and policy iteration
    at a stable policy; value iteration's model also evaluates in policy iteration."""
    saved = vi.train(vi.Args(save_model=True, eval_episodes=20))
    model_file = f"{saved['run_dir']}/value_iteration.npz"
    again = vi.train(vi.Args(model_path=model_file, eval_episodes=20))
    assert again["iterations"] == 1 and again["eval_returns"] == saved["eval_returns"]
    stable = pi.train(pi.Args(model_path=model_file, eval_episodes=20))
    assert read_iterations(stable["run_dir"])[0]["policy_changes"] == "0"
    evaluated = pi.train(pi.Args(model_path=model_file, max_iterations=0, eval_episodes=20))
    assert evaluated["eval_returns"] == saved["eval_returns"]


@pytest.mark.learning
def test_the_planned_policy_is_optimal_and_q_learning_does_not_beat_it(in_tmp):
    """Slippery FrozenLake 4x4, the 1000 seeded evaluation episodes q_learning.py's benchmark uses."""
    planned = vi.train(vi.Args(eval_episodes=1000))
    optimum = np.mean(planned["eval_returns"])
    assert optimum == pytest.approx(0.734)  # the reference q_learning.py's benchmark row quotes
    # The exact chance of reaching the goal within the 100-step limit, from the model: 0.7402. The
    # seeded 0.734 is a sample of it (standard error 0.014).
    model = env_model(vi)
    states = np.arange(len(planned["policy"]))
    policy_model = vi.Model(*(array[states, planned["policy"]] for array in model))
    success = np.zeros(len(states))
    for _ in range(100):
        success = vi.expected_update(policy_model, success, 1.0)
    assert success[0] == pytest.approx(0.7402, abs=1e-4) and abs(optimum - success[0]) < 0.014

    ql = load_module("q_learning.py")
    learned = ql.train(ql.Args(eval_episodes=1000))  # its defaults: 200k steps
    learned_policy = learned["q_table"].argmax(axis=1)
    # Exactly: the learned greedy policy's discounted value from the start cannot exceed v*, and is close.
    learned_values = exact_policy_values(model, learned_policy, 0.99)
    assert planned["values"][0] - 0.01 < learned_values[0] <= planned["values"][0] + 1e-8
    # On the same seeded episodes: no better, and within about one standard error below.
    assert optimum - 0.015 <= np.mean(learned["eval_returns"]) <= optimum
