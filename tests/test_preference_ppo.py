"""preference_ppo.py (Christiano et al. 2017): the labelling schedule, segments, the oracle and the
Bradley-Terry loss by hand; the agent never sees the reward (a reward the oracle ranks the same way
gives the same run); and learning from comparisons alone."""

import csv

import numpy as np
import pytest
import torch

from conftest import load_module, read_summary, run_ok

preference_ppo = load_module("preference_ppo.py")


def test_the_labelling_schedule_starts_with_the_initial_comparisons_and_ends_with_all():
    due = [preference_ppo.comparisons_due(iteration, 48, 100, 500) for iteration in range(1, 49)]
    assert due[0] == 100 and due[-1] == 500
    increments = np.diff(due)
    assert (increments >= 0).all()
    # the rate falls: the first quarter of the run gets more new labels than the last half
    assert sum(increments[:12]) > sum(increments[24:])
    assert preference_ppo.comparisons_due(1, 1, 100, 500) == 500  # a one-iteration run labels everything at once


def test_segments_are_consecutive_steps_of_one_env_and_a_short_rest_is_left_out():
    num_steps, num_envs, length = 7, 2, 3
    obs_and_actions = torch.arange(num_steps * num_envs * 2, dtype=torch.float32).reshape(num_steps, num_envs, 2)
    true_rewards = torch.arange(num_steps * num_envs, dtype=torch.float32).reshape(num_steps, num_envs)
    segments, returns = preference_ppo.cut_segments(obs_and_actions, true_rewards, length)
    assert segments.shape == (4, 3, 2)  # two windows per env; step 6 is left out
    # segment 1 is env 0's steps 3..5, segment 2 env 1's steps 0..2
    assert torch.equal(segments[1], obs_and_actions[3:6, 0])
    assert torch.equal(segments[2], obs_and_actions[0:3, 1])
    assert returns.tolist() == [true_rewards[0:3, 0].sum().item(), true_rewards[3:6, 0].sum().item(),
                                true_rewards[0:3, 1].sum().item(), true_rewards[3:6, 1].sum().item()]


def test_the_oracle_prefers_the_higher_true_return_or_draws_the_bradley_terry_way():
    first, second = torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 2.0])
    assert preference_ppo.oracle_preferences(first, second, 0.0).tolist() == [1.0, 0.0, 0.5]
    torch.manual_seed(0)
    draws = 20_000
    answers = preference_ppo.oracle_preferences(torch.full((draws,), 1.0), torch.zeros(draws), 2.0)
    p = 1.0 / (1.0 + np.exp(-0.5))
    assert abs(answers.mean().item() - p) < 4 * np.sqrt(p * (1 - p) / draws)


def test_the_preference_loss_by_hand():
    """A reward model that scores a step by its first feature: segment sums 3 and 1, then 0 and 2."""

    def first_feature(steps: torch.Tensor) -> torch.Tensor:
        return steps[..., 0]

    segments = torch.zeros((2, 2, 2, 3))
    segments[0, 0, :, 0] = torch.tensor([1.0, 2.0])
    segments[0, 1, :, 0] = torch.tensor([0.5, 0.5])
    segments[1, 1, :, 0] = torch.tensor([2.0, 0.0])
    preferences = torch.tensor([1.0, 1.0])  # the first of each pair preferred: right about pair 0, wrong about 1
    loss = preference_ppo.preference_loss(first_feature, segments, preferences)
    accuracy = preference_ppo.preference_accuracy(first_feature, segments, preferences)
    expected = -(np.log(1 / (1 + np.exp(-2.0))) + np.log(1 / (1 + np.exp(2.0)))) / 2
    assert loss.item() == pytest.approx(expected)
    assert accuracy == 0.5


SHIFTED_ENVS = '''
import gymnasium as gym


def make(scale=1.0, shift=0.0):
    """Pendulum-v1 whose reward is scale * r + shift: with scale > 0, segments of equal length rank alike."""
    return gym.wrappers.TransformReward(gym.make("Pendulum-v1"), lambda reward: scale * reward + shift)


gym.register("ShiftedPendulum-v0", entry_point=make)
'''


def test_the_agent_never_sees_the_reward(tmp_path):
    """The same run in Pendulum and in a Pendulum whose reward is 10 r + 3: the exact oracle ranks every
    pair of segments alike, so the comparisons, the reward model and the agent are bitwise the same; only
    the logged true returns differ (by exactly that transformation)."""
    (tmp_path / "shifted_envs.py").write_text(SHIFTED_ENVS)
    flags = ["--env-id", "shifted_envs:ShiftedPendulum-v0", "--total-timesteps", "2048", "--num-envs", "2",
             "--num-steps", "512", "--num-minibatches", "8", "--update-epochs", "2", "--num-comparisons", "40",
             "--initial-comparisons", "20", "--reward-model-updates", "20", "--eval-episodes", "1", "--save-model"]
    plain = run_ok("preference_ppo.py", flags + ["--env-kwargs", '{"scale": 1.0, "shift": 0.0}'], tmp_path)
    shifted = run_ok("preference_ppo.py", flags + ["--env-kwargs", '{"scale": 10.0, "shift": 3.0}'], tmp_path)
    plain_model, shifted_model = (torch.load(run / "preference_ppo.pt") for run in (plain, shifted))
    for part in ("agent", "reward_model"):
        assert all(torch.equal(plain_model[part][name], shifted_model[part][name]) for name in plain_model[part])
    assert torch.equal(plain_model["comparisons"]["preferences"], shifted_model["comparisons"]["preferences"])
    plain_rows, shifted_rows = (list(csv.DictReader(open(run / "episodes.csv"))) for run in (plain, shifted))
    assert len(plain_rows) == len(shifted_rows) > 0
    for row, other in zip(plain_rows, shifted_rows):
        length = int(row["episode_length"])
        assert float(other["episode_return"]) == pytest.approx(10 * float(row["episode_return"]) + 3 * length, rel=1e-5)


@pytest.mark.learning
def test_pendulum_learns_from_comparisons_alone(tmp_path):
    """Seed 1, 61,440 steps (30 iterations) and 150 comparisons: the true return of the last 20 training
    episodes is far above that of the first 20, the untrained policy's (measured: -652 against -1,212; the
    mean of 20 random episodes varies by about 60), though the agent never saw it."""
    run_dir = run_ok("preference_ppo.py", ["--total-timesteps", "61440", "--num-comparisons", "150",
                                           "--initial-comparisons", "50", "--eval-episodes", "2"], tmp_path)
    rows = list(csv.DictReader(open(run_dir / "episodes.csv")))
    last = np.mean([float(row["episode_return"]) for row in rows[-20:]])
    assert last > -1000, last
    assert read_summary(run_dir)["comparisons"] == 150
