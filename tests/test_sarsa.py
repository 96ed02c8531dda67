"""sarsa.py and expected_sarsa.py: the update rules, the epsilon-greedy probabilities, termination vs
truncation, the on-policy action, and Example 6.6 of Sutton & Barto (2018), the cliff walk."""

import contextlib
import io

import gymnasium as gym
import numpy as np
import pytest

from conftest import load_module

sarsa = load_module("sarsa.py")
esarsa = load_module("expected_sarsa.py")
qlearning = load_module("q_learning.py")

# CliffWalking-v1 is a 4 x 12 grid, state = 12 * row + column; start (3, 0), goal (3, 11), cliff (3, 1..10).
START, GOAL, N_COLUMNS = 36, 47, 12
CLIFF_EDGE = {2 * N_COLUMNS + column for column in range(1, 11)}  # the row just above the cliff


# ---------------------------------------------------------------------------------------- update rules
def test_sarsa_update_uses_the_next_action_taken():
    q_table = np.zeros((2, 2))
    q_table[0, 1] = 3.0
    q_table[1] = [5.0, -1.0]
    alpha, gamma, reward = 0.1, 0.9, 0.0
    # A' = 1 (an exploratory action, not the greedy one): 3 + 0.1 * (0 + 0.9 * -1 - 3) = 2.61
    td_error = sarsa.sarsa_update(q_table, 0, 1, reward, 1, 1, False, alpha, gamma)
    assert td_error == pytest.approx(-3.9)
    assert q_table[0, 1] == pytest.approx(2.61)
    assert q_table[1].tolist() == [5.0, -1.0] and q_table[0, 0] == 0.0  # nothing else moved
    # A' = 0 (greedy): from 2.61, 2.61 + 0.1 * (0.9 * 5 - 2.61) = 2.799 (here it agrees with Q-learning)
    sarsa.sarsa_update(q_table, 0, 1, reward, 1, 0, False, alpha, gamma)
    assert q_table[0, 1] == pytest.approx(2.799)


def test_expected_sarsa_update_averages_over_the_epsilon_greedy_policy():
    q_table = np.zeros((2, 4))
    q_table[0, 1] = 3.0
    q_table[1] = [5.0, -1.0, 5.0, 2.0]  # two tied maxima
    # pi(.|1) at epsilon 0.2: 0.05 each, plus 0.8 split between actions 0 and 2 -> [0.45, 0.05, 0.45, 0.05]
    expected_q = 0.45 * 5.0 + 0.05 * -1.0 + 0.45 * 5.0 + 0.05 * 2.0  # 4.55
    target = -1.0 + 0.9 * expected_q  # 3.095
    td_error = esarsa.expected_sarsa_update(q_table, 0, 1, -1.0, 1, False, 0.2, 0.1, 0.9)
    assert td_error == pytest.approx(target - 3.0) == pytest.approx(0.095)
    assert q_table[0, 1] == pytest.approx(3.0095)
    assert q_table[1].tolist() == [5.0, -1.0, 5.0, 2.0] and q_table[0, 0] == 0.0


def test_expected_sarsa_with_epsilon_zero_is_q_learning():
    next_q = np.array([2.0, 4.0, -3.0])
    assert esarsa.td_target(1.0, next_q, False, 0.5, epsilon=0.0) == 1.0 + 0.5 * 4.0
    assert qlearning.td_target(1.0, next_q, False, 0.5) == 1.0 + 0.5 * 4.0
    # epsilon 1: the uniform average, (2 + 4 - 3) / 3 = 1
    assert esarsa.td_target(1.0, next_q, False, 0.5, epsilon=1.0) == pytest.approx(1.0 + 0.5 * 1.0)


def test_targets_drop_the_bootstrap_only_on_termination():
    assert sarsa.td_target(1.0, 4.0, terminated=True, gamma=0.5) == 1.0
    assert sarsa.td_target(1.0, 4.0, terminated=False, gamma=0.5) == 1.0 + 0.5 * 4.0
    next_q = np.array([2.0, 4.0])
    assert esarsa.td_target(1.0, next_q, terminated=True, gamma=0.5, epsilon=0.1) == 1.0
    # 0.05 * 2 + 0.95 * 4 = 3.9
    assert esarsa.td_target(1.0, next_q, terminated=False, gamma=0.5, epsilon=0.1) == pytest.approx(1.0 + 0.5 * 3.9)


# ---------------------------------------------------------------------------------------- epsilon-greedy
@pytest.mark.parametrize("q_values, epsilon, by_hand", [
    ([1.0, 0.0, 0.0, 0.0], 0.1, [0.925, 0.025, 0.025, 0.025]),
    ([1.0, 1.0, 0.0, 0.0], 0.1, [0.475, 0.475, 0.025, 0.025]),  # the greedy mass is split between ties
    ([0.0, 0.0, 0.0], 0.3, [1 / 3, 1 / 3, 1 / 3]),  # all tied: uniform whatever epsilon
    ([-2.0, 5.0, 5.0, 5.0], 0.0, [0.0, 1 / 3, 1 / 3, 1 / 3]),
    ([3.0, -1.0], 1.0, [0.5, 0.5]),
])
def test_epsilon_greedy_probs_by_hand(q_values, epsilon, by_hand):
    probs = esarsa.epsilon_greedy_probs(np.array(q_values), epsilon)
    assert probs.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(probs, by_hand)


def test_epsilon_greedy_probs_match_the_sampled_action_frequencies():
    """The expectation must be over the policy actually followed, ties broken at random included."""
    rng = np.random.default_rng(0)
    q_values, epsilon, samples = np.array([1.0, 1.0, 0.0, -1.0]), 0.2, 40_000
    actions = [esarsa.epsilon_greedy(q_values, epsilon, rng) for _ in range(samples)]
    frequencies = np.bincount(actions, minlength=4) / samples
    np.testing.assert_allclose(frequencies, esarsa.epsilon_greedy_probs(q_values, epsilon), atol=0.01)


# ---------------------------------------------------------------------------------------- termination vs truncation
class TwoStateEnv(gym.Env):
    """Reset in state 0; any step moves to state 1 (reward 0), which then pays 1 forever. Only the
    time limit ends an episode, so the final state is always 1, never the reset state 0.
    True values: Q(1) = 1 / (1 - gamma) = 10 and Q(0) = gamma * Q(1) = 9 at gamma 0.9. Treating the
    limit as a termination drags Q(1) down; bootstrapping from the reset state instead of the true
    final state gives Q(1) = 1 + gamma * Q(0), i.e. Q(1) = 1 / (1 - gamma^2) = 5.26."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(1)

    def __init__(self, render_mode=None):
        self.render_mode, self.state = render_mode, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return 0, {}

    def step(self, action):
        reward, self.state = float(self.state), 1
        return 1, reward, False, False, {}


@pytest.mark.parametrize("module", [sarsa, esarsa], ids=["sarsa", "expected_sarsa"])
def test_truncation_bootstraps_from_the_true_final_state(module, in_tmp):
    if "LucidRL/TwoState-v0" not in gym.registry:
        gym.register("LucidRL/TwoState-v0", entry_point=TwoStateEnv, max_episode_steps=4)
    gamma = 0.9
    with contextlib.redirect_stdout(io.StringIO()):
        result = module.train(module.Args(env_id="LucidRL/TwoState-v0", total_timesteps=2_000, gamma=gamma,
                                          eval_episodes=1))
    np.testing.assert_allclose(result["q_table"][:, 0], [gamma / (1 - gamma), 1 / (1 - gamma)], rtol=1e-3)


# ---------------------------------------------------------------------------------------- on-policy
def test_sarsa_takes_the_next_action_it_bootstrapped_from(in_tmp, monkeypatch):
    """A' in the update of step t is the action executed at step t + 1, unless step t ended the episode."""
    updates, steps = [], []
    real_update, real_make_env = sarsa.sarsa_update, sarsa.make_env

    def spy_update(q_table, obs, action, reward, next_obs, next_action, *rest):
        updates.append((action, next_action))
        return real_update(q_table, obs, action, reward, next_obs, next_action, *rest)

    class StepRecorder(gym.Wrapper):
        def step(self, action):
            result = self.env.step(action)
            steps.append((action, result[2] or result[3]))  # (action taken, episode ended)
            return result

    monkeypatch.setattr(sarsa, "sarsa_update", spy_update)
    monkeypatch.setattr(sarsa, "make_env", lambda *args, **kwargs: StepRecorder(real_make_env(*args, **kwargs)))
    with contextlib.redirect_stdout(io.StringIO()):
        sarsa.train(sarsa.Args(total_timesteps=3_000, max_episode_steps=40, eval_episodes=1))
    assert len(updates) == 3_000 and len(steps) > 3_000  # the greedy evaluation episode adds steps
    checked = 0
    for t in range(len(updates) - 1):
        assert updates[t][0] == steps[t][0]  # the update is for the action that was taken
        if not steps[t][1]:
            assert updates[t][1] == steps[t + 1][0], f"step {t + 1} did not take the A' of step {t}"
            checked += 1
    assert checked > 2_500 and sum(ended for _, ended in steps[:3_000]) > 10


# ---------------------------------------------------------------------------------------- Example 6.6
BOOK_SETTINGS = dict(env_id="CliffWalking-v1", start_e=0.1, end_e=0.1, learning_rate=0.5, gamma=1.0,
                     eval_episodes=1)
EPISODES, SEEDS = 500, [1, 2, 3, 4, 5]
# Steps that finish 500 episodes at these settings for every seed (SARSA's episodes are longer).
BUDGETS = {"q_learning": 11_000, "sarsa": 15_000, "expected_sarsa": 11_000}


@pytest.fixture(scope="module")
def cliff_runs(tmp_path_factory):
    """Each algorithm with the book's settings on 5 seeds: online returns of the first 500 episodes
    (shape (seeds, 500)), greedy evaluation returns and Q-tables. About 5 s in all."""
    runs = {}
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(io.StringIO()):
        monkeypatch.chdir(tmp_path_factory.mktemp("cliff"))
        for name, module in (("q_learning", qlearning), ("sarsa", sarsa), ("expected_sarsa", esarsa)):
            results = [module.train(module.Args(seed=seed, total_timesteps=BUDGETS[name], **BOOK_SETTINGS))
                       for seed in SEEDS]
            assert all(len(result["episodic_returns"]) >= EPISODES for result in results)
            runs[name] = {"online": np.array([result["episodic_returns"][:EPISODES] for result in results]),
                          "eval": [result["eval_returns"][0] for result in results],
                          "q_tables": [result["q_table"] for result in results]}
    return runs


def greedy_path(q_table: np.ndarray, max_steps: int = 60) -> list:
    """The states the greedy policy visits from the start (the cliff walk is deterministic)."""
    env = gym.make("CliffWalking-v1")
    obs, _ = env.reset(seed=0)
    path = [obs]
    for _ in range(max_steps):
        obs, _, terminated, _, _ = env.step(int(np.argmax(q_table[obs])))
        path.append(obs)
        if terminated:
            break
    return path


@pytest.mark.learning
def test_example_6_6_sarsa_earns_more_online_than_q_learning(cliff_runs):
    """The book's figure: from about episode 100 on, SARSA earns ≈ −25 and Q-learning ≈ −50 per
    episode (ε = 0.1): Q-learning walks the edge and its exploratory steps drop it off the cliff.
    Expected SARSA does at least as well as SARSA (Figure 6.3 at α = 0.5). Measured over 30 seeds,
    episodes 201-500: SARSA −27.5, Q-learning −50.0, Expected SARSA −20.8."""
    late = {name: runs["online"][:, 200:].mean(axis=1) for name, runs in cliff_runs.items()}  # (seeds,)
    whole = {name: float(runs["online"].mean()) for name, runs in cliff_runs.items()}
    assert -35 < late["sarsa"].mean() < -20 and -57 < late["q_learning"].mean() < -43, late  # ≈ −25, ≈ −50
    assert late["sarsa"].mean() > late["q_learning"].mean() + 10, late
    assert late["sarsa"].min() > late["q_learning"].max(), late  # every SARSA run beats every Q-learning run
    assert whole["sarsa"] > whole["q_learning"], whole  # also over all 500 episodes, learning included
    assert late["expected_sarsa"].mean() >= late["sarsa"].mean() and whole["expected_sarsa"] >= whole["sarsa"], \
        (late, whole)


@pytest.mark.learning
def test_example_6_6_greedy_paths_q_learning_on_the_edge_sarsa_away(cliff_runs):
    # Q-learning learns q*, whose greedy path runs along all ten cells of the cliff edge: the optimal −13.
    assert cliff_runs["q_learning"]["eval"] == [-13.0] * len(SEEDS)
    for q_table in cliff_runs["q_learning"]["q_tables"]:
        assert CLIFF_EDGE <= set(greedy_path(q_table))
    # SARSA and Expected SARSA learn the values of the exploring policy: their greedy paths keep a
    # row or more away from the edge (−15 along row 1, −17 along the top row). Over seeds 1-30 at
    # these budgets, 28 of SARSA's 30 paths touch no edge cell (one touches 1, one 4), none of
    # Expected SARSA's do.
    for name in ("sarsa", "expected_sarsa"):
        paths = [greedy_path(q_table) for q_table in cliff_runs[name]["q_tables"]]
        assert all(len(CLIFF_EDGE & set(path)) < len(CLIFF_EDGE) // 2 for path in paths), name
        assert sum(not CLIFF_EDGE & set(path) for path in paths) >= 3, name
        assert all(eval_return <= -15 for eval_return in cliff_runs[name]["eval"]), name
    # With a constant alpha SARSA's table keeps moving with each sampled A', and a snapshot's greedy
    # policy can cycle forever (8 of 30 seeds; return −500 at the time limit); most of the greedy
    # paths reach the goal (22 of 30: 21 at −17, 1 at −19).
    sarsa_paths = [greedy_path(q_table) for q_table in cliff_runs["sarsa"]["q_tables"]]
    assert sum(path[-1] == GOAL for path in sarsa_paths) >= 3, cliff_runs["sarsa"]["eval"]
    # Expected SARSA's target has no sampled A' (zero variance in this deterministic env), so its table
    # settles: every greedy path reaches the goal along row 1 (30 of 30 seeds: −15).
    assert cliff_runs["expected_sarsa"]["eval"] == [-15.0] * len(SEEDS)
