"""bandits.py: each update rule by hand, random tie-breaking, the run directory, bad input, and the
orderings of Sutton & Barto's Figures 2.2-2.5 on the 10-armed testbed (2000 runs x 1000 steps)."""

import json
import math

import numpy as np
import pytest

from conftest import load_module, run_in_process

bd = load_module("bandits.py")


# ---------------------------------------------------------------------------------------- Unit tests
def test_sample_average_update_keeps_the_mean_of_each_arms_rewards():
    q_values, counts = np.zeros((2, 3)), np.zeros((2, 3))
    for reward in (1.0, 2.0, 6.0):  # run 0 pulls arm 2, run 1 pulls arm 0
        bd.update_action_values(q_values, counts, np.array([2, 0]), np.array([reward, -reward]), None)
    assert q_values.tolist() == [[0.0, 0.0, 3.0], [-3.0, 0.0, 0.0]]  # Eq. 2.3: the running mean (1+2+6)/3
    assert counts.tolist() == [[0, 0, 3], [3, 0, 0]]


def test_constant_step_size_weights_recent_rewards_exponentially():
    q_values, counts = np.full((1, 2), 5.0), np.zeros((1, 2))
    for reward in (1.0, 2.0):
        bd.update_action_values(q_values, counts, np.array([1]), np.array([reward]), 0.1)
    # By hand: 5 + 0.1 (1 - 5) = 4.6; 4.6 + 0.1 (2 - 4.6) = 4.34. Eq. 2.6: 0.9^2 5 + 0.1 0.9 1 + 0.1 2.
    assert q_values[0, 1] == pytest.approx(4.34) == pytest.approx(0.81 * 5 + 0.09 * 1 + 0.1 * 2)
    assert q_values[0, 0] == 5.0 and counts.tolist() == [[0, 2]]


def test_ucb_scores_by_hand_and_an_untried_arm_is_maximal():
    q_values, t, c = np.array([[0.5, 1.0, 0.2]]), 5, 2.0
    scores = bd.ucb_scores(q_values, np.array([[0, 1, 4]]), t, c)
    # Eq. 2.10: 1 + 2 sqrt(ln 5 / 1) = 3.5373 and 0.2 + 2 sqrt(ln 5 / 4) = 1.4686; N = 0 is maximal.
    assert scores[0, 0] == np.inf
    assert scores[0, 1:].tolist() == pytest.approx([1.0 + 2 * math.sqrt(math.log(5)), 0.2 + math.sqrt(math.log(5))])
    assert scores[0, 1:].tolist() == pytest.approx([3.53727, 1.46864], abs=1e-5)
    rng = np.random.default_rng(0)
    assert bd.random_argmax(scores, rng).tolist() == [0]
    # Every arm tried: the bonus, not the estimate alone, decides (arm 1 has one pull, arm 0 two).
    tried = bd.ucb_scores(q_values, np.array([[2, 1, 4]]), t, c)
    assert tried[0, 0] == pytest.approx(0.5 + 2 * math.sqrt(math.log(5) / 2)) == pytest.approx(2.29412, abs=1e-5)
    assert bd.random_argmax(tried, rng).tolist() == [1]
    # At t = 1 nothing is tried yet: all arms are maximal, and the choice among them is random.
    first = bd.ucb_scores(np.zeros((1000, 3)), np.zeros((1000, 3)), 1, c)
    assert set(bd.random_argmax(first, rng).tolist()) == {0, 1, 2}


def test_softmax_by_hand_stable_and_shift_invariant():
    assert bd.softmax(np.array([[0.0, math.log(3.0)]]))[0].tolist() == pytest.approx([0.25, 0.75])
    assert bd.softmax(np.array([[1000.0, 1000.0]])).tolist() == [[0.5, 0.5]]  # no overflow
    preferences = np.array([[0.3, -1.2, 2.0]])
    assert bd.softmax(preferences + 7.0) == pytest.approx(bd.softmax(preferences))


@pytest.mark.parametrize("baseline, expected", [(1.0, [0.1, -0.1]), (0.0, [0.15, -0.15])])
def test_gradient_update_by_hand_with_and_without_baseline(baseline, expected):
    preferences, probs = np.zeros((1, 2)), np.array([[0.5, 0.5]])
    # Eq. 2.12 with alpha 0.1, R = 3, A = 0: H(0) += 0.1 (3 - b)(1 - 0.5); H(1) -= 0.1 (3 - b) 0.5.
    bd.update_preferences(preferences, probs, np.array([0]), np.array([3.0]), baseline, 0.1)
    assert preferences[0].tolist() == pytest.approx(expected)


def test_gradient_update_by_hand_three_arms():
    preferences = np.array([[0.0, math.log(2.0), 0.0]])
    probs = bd.softmax(preferences)  # [1/4, 1/2, 1/4]
    bd.update_preferences(preferences, probs, np.array([1]), np.array([2.0]), np.array([0.0]), 0.5)
    # H(1) += 0.5 * 2 * (1 - 1/2) = 0.5; the others lose 0.5 * 2 * 1/4 = 0.25.
    assert preferences[0].tolist() == pytest.approx([-0.25, math.log(2.0) + 0.5, -0.25])


def test_the_baseline_is_the_average_reward_including_the_current_one(monkeypatch):
    seen, real_update = [], bd.update_preferences

    def spy(preferences, probs, actions, rewards, baseline, step_size):
        seen.append((rewards.copy(), np.copy(baseline)))
        real_update(preferences, probs, actions, rewards, baseline, step_size)

    monkeypatch.setattr(bd, "update_preferences", spy)
    method = {"kind": "gradient", "step_size": 0.1, "baseline": True}
    bd.run_method(method, np.random.default_rng(0).normal(size=(4, 3)), 5, np.random.default_rng(1))
    rewards = np.array([rewards for rewards, _ in seen])  # (steps, runs)
    for t, (_, baseline) in enumerate(seen, start=1):
        assert baseline == pytest.approx(rewards[:t].mean(axis=0))  # R_1..R_t (footnote to Fig. 2.5)
    assert seen[0][1] == pytest.approx(seen[0][0])  # so the first step leaves H unchanged


def test_with_the_baseline_a_shift_of_all_true_values_changes_nothing():
    q_true = np.random.default_rng(0).normal(size=(100, 10))

    def run(baseline, shift):  # the same random stream each time
        method = {"kind": "gradient", "step_size": 0.1, "baseline": baseline}
        return bd.run_method(method, q_true + shift, 200, np.random.default_rng(1))

    (plain_reward, plain_opt), (shifted_reward, shifted_opt) = run(True, 0.0), run(True, 4.0)
    assert np.array_equal(plain_opt, shifted_opt) and shifted_reward == pytest.approx(plain_reward + 4.0)
    assert not np.array_equal(run(False, 0.0)[1], run(False, 4.0)[1])  # without it, +4 drives every update


def test_argmax_ties_are_broken_uniformly_at_random():
    rng = np.random.default_rng(0)
    values = np.tile([[1.0, 3.0, 3.0, 0.0, 3.0]], (30_000, 1))
    counts = np.bincount(bd.random_argmax(values, rng), minlength=5) / len(values)
    assert counts[[0, 3]].tolist() == [0.0, 0.0]
    assert counts[[1, 2, 4]] == pytest.approx([1 / 3] * 3, abs=0.015)
    assert bd.random_argmax(np.array([[0.0, -1.0, 0.5], [2.0, 1.0, 0.0]]), rng).tolist() == [2, 0]  # no tie


def test_epsilon_greedy_explores_uniformly_with_probability_epsilon():
    rng = np.random.default_rng(0)
    q_values = np.tile([[0.0, 1.0, 0.5, -1.0]], (40_000, 1))
    assert set(bd.epsilon_greedy(q_values, 0.0, rng).tolist()) == {1}
    explore = np.bincount(bd.epsilon_greedy(q_values, 1.0, rng), minlength=4) / len(q_values)
    assert explore == pytest.approx([0.25] * 4, abs=0.015)
    # epsilon 0.1: a non-greedy arm with probability 0.1 * 3/4 (exploring may pick the greedy arm too)
    assert np.mean(bd.epsilon_greedy(q_values, 0.1, rng) != 1) == pytest.approx(0.075, abs=0.006)


def test_sample_actions_follows_the_probabilities():
    probs = np.tile([[0.2, 0.5, 0.0, 0.3]], (40_000, 1))
    frequencies = np.bincount(bd.sample_actions(probs, np.random.default_rng(0)), minlength=4) / len(probs)
    assert frequencies[2] == 0.0 and frequencies == pytest.approx([0.2, 0.5, 0.0, 0.3], abs=0.01)


def test_every_method_meets_the_same_problems(in_tmp, monkeypatch):
    seen, real_run = [], bd.run_method

    def spy(method, q_true, num_steps, rng):
        seen.append(q_true - (4.0 if method["kind"] == "gradient" else 0.0))  # Fig. 2.5's testbed is shifted
        return real_run(method, q_true, num_steps, rng)

    monkeypatch.setattr(bd, "run_method", spy)
    bd.train(bd.Args(num_runs=5, num_steps=3))
    assert len(seen) == 10 and all(np.allclose(q_true, seen[0]) for q_true in seen)


def test_run_directory_holds_one_csv_with_a_row_per_step_and_the_summary(in_tmp):
    result = bd.train(bd.Args(num_runs=20, num_steps=30, seed=3))
    run_dir = in_tmp / result["run_dir"]
    assert run_dir.name.split("__")[:3] == ["10-armed-testbed", "bandits", "3"]
    assert sorted(path.name for path in run_dir.iterdir()) == ["curves.csv", "summary.json"]
    lines = (run_dir / "curves.csv").read_text().splitlines()
    names = ["eps_0", "eps_0.01", "eps_0.1", "optimistic_q5", "realistic_q0", "ucb_c2", "gradient_a0.1_baseline",
             "gradient_a0.1_no_baseline", "gradient_a0.4_baseline", "gradient_a0.4_no_baseline"]
    assert lines[0] == ",".join(["step"] + [f"{name}_{column}" for name in names for column in ("reward", "optimal")])
    assert len(lines) == 31 and lines[1].startswith("1,") and lines[-1].startswith("30,")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"args", "methods", "sps", "wall_time", "versions"} <= set(summary)
    assert list(summary["methods"]) == names and summary["args"]["num_runs"] == 20
    assert set(summary["methods"]["ucb_c2"]) == {"mean_reward", "mean_reward_last_100", "optimal_action_pct_final",
                                                 "optimal_action_pct_last_100"}
    assert result["figures"]["figure_2_4"] == ["ucb_c2", "eps_0.1"]


@pytest.mark.parametrize("bad_args, named", [
    (["--num-runs", "0"], "--num-runs"), (["--num-steps", "0"], "--num-steps"), (["--num-arms", "1"], "--num-arms"),
    (["--epsilons", "0", "1.5"], "--epsilons"), (["--epsilon", "-0.1"], "--epsilon"),
    (["--step-size", "0"], "--step-size"), (["--ucb-c", "-1"], "--ucb-c"),
    (["--gradient-step-sizes", "0.1", "0"], "--gradient-step-sizes"), (["--initial-value", "nan"], "--initial-value"),
])
def test_bad_input_exits_2_with_one_line_naming_the_argument(bad_args, named, in_tmp, capsys):
    status, stderr = run_in_process("bandits.py", bad_args, capsys)
    assert status == 2 and len(stderr.strip().splitlines()) == 1 and named in stderr, stderr
    assert not (in_tmp / "runs").exists()


# ---------------------------------------------------------------------------------------- Behaviour
@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    """The default run (2000 runs x 1000 steps, seed 1): the curves the book's figures show."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("bandits"))
        return bd.train(bd.Args(seed=1))["curves"]


def window(curve: np.ndarray, first: int, last: int) -> float:
    """Mean of a curve over steps first..last (1-based, inclusive)."""
    return float(curve[first - 1:last].mean())


@pytest.mark.learning
def test_figure_2_2_epsilon_greedy(testbed):
    (greedy_reward, greedy_opt), (small_reward, small_opt), (eps_reward, eps_opt) = \
        testbed["eps_0"], testbed["eps_0.01"], testbed["eps_0.1"]
    # % optimal at step 1000: 0.1 > 0.01 > 0 (book: about 80%, 55-60%, a third)
    assert eps_opt[-1] > small_opt[-1] + 10 and small_opt[-1] > greedy_opt[-1] + 15
    assert 72 < eps_opt[-1] < 88 and 45 < small_opt[-1] < 72 and 28 < greedy_opt[-1] < 45
    assert window(eps_opt, 1, 200) > window(small_opt, 1, 200) + 8  # 0.1 finds the best arm sooner
    # Greedy's reward plateaus near 1; epsilon 0.1 reaches about 1.35 (last 100 steps)
    assert 0.9 < window(greedy_reward, 901, 1000) < 1.15 and 1.25 < window(eps_reward, 901, 1000) < 1.5
    assert window(small_reward, 901, 1000) > window(greedy_reward, 901, 1000) + 0.15


@pytest.mark.learning
def test_figure_2_3_optimistic_initial_values(testbed):
    optimistic, realistic = testbed["optimistic_q5"][1], testbed["realistic_q0"][1]
    # The spike at step 11: every arm was tried once, and the best single reward often marks the best arm.
    assert optimistic[10] > 35 and optimistic[10] > optimistic[9] + 20 and optimistic[10] > window(optimistic, 12, 30) + 15
    assert window(realistic, 1, 100) > window(optimistic, 1, 100) + 10  # early: optimism explores more
    for first in range(301, 1000, 100):  # then optimistic greedy wins (book: ~85% vs ~80% at step 1000)
        assert window(optimistic, first, first + 99) > window(realistic, first, first + 99) + 5
    assert 80 < window(optimistic, 901, 1000) < 92 and 68 < window(realistic, 901, 1000) < 83


@pytest.mark.learning
def test_figure_2_4_ucb_beats_epsilon_greedy(testbed):
    ucb, eps = testbed["ucb_c2"][0], testbed["eps_0.1"][0]
    assert abs(window(ucb, 1, 10)) < 0.15  # the first k steps try each arm once: the mean of q*, ~0
    assert ucb[10] > 0.9 and ucb[10] > window(ucb, 12, 20) + 0.1  # the spike at step 11
    for first in range(101, 1000, 100):
        assert window(ucb, first, first + 99) > window(eps, first, first + 99) + 0.03
    assert window(ucb, 101, 1000) > window(eps, 101, 1000) + 0.06
    assert 1.4 < window(ucb, 901, 1000) < 1.6  # book: ~1.5 against ~1.35 for epsilon-greedy


@pytest.mark.learning
def test_figure_2_5_gradient_bandit_baseline(testbed):
    final = {name: window(curves[1], 901, 1000) for name, curves in testbed.items() if name.startswith("gradient")}
    for alpha in ("0.1", "0.4"):  # with the baseline beats without it, for both step sizes
        assert final[f"gradient_a{alpha}_baseline"] > final[f"gradient_a{alpha}_no_baseline"] + 20
        assert window(testbed[f"gradient_a{alpha}_baseline"][1], 1, 1000) > \
            window(testbed[f"gradient_a{alpha}_no_baseline"][1], 1, 1000) + 15
    # book: roughly 80% and 75% with the baseline, 50% and 30% without it (alpha 0.1 and 0.4)
    assert 78 < final["gradient_a0.1_baseline"] < 92 and 65 < final["gradient_a0.4_baseline"] < 82
    assert 35 < final["gradient_a0.1_no_baseline"] < 60 and 18 < final["gradient_a0.4_no_baseline"] < 40
