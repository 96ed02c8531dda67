"""reinforce.py: discounted returns, truncation bootstrapping in the loop, the Gaussian log-prob of
the unclipped sample, and learning CartPole."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import TimedEnv, load_module

rf = load_module("reinforce.py")


def test_discounted_returns_by_hand_with_termination_truncation_and_idle_steps():
    gamma = 0.5
    # Column 0: terminated after 3 steps (rewards 1, 2, 4), then one idle step.
    # Column 1: truncated after 4 steps (rewards 1, 1, 1, 1), bootstrapped with b(final obs) = 8.
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [4.0, 1.0], [99.0, 1.0]])
    valid = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    bootstrap = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 8.0]])
    returns = rf.compute_discounted_returns(rewards, bootstrap, valid, gamma)
    # Terminated: G2 = 4, G1 = 2 + 0.5 * 4 = 4, G0 = 1 + 0.5 * 4 = 3; the idle step is 0.
    assert returns[:, 0].tolist() == [3.0, 4.0, 4.0, 0.0]
    # Truncated: G3 = 1 + 0.5 * 8 = 5, G2 = 1 + 2.5 = 3.5, G1 = 1 + 1.75 = 2.75, G0 = 1 + 1.375 = 2.375.
    assert returns[:, 1].tolist() == [2.375, 2.75, 3.5, 5.0]


@pytest.mark.parametrize("terminate_at, bootstraps", [(None, True), (3, False)])
def test_loop_bootstraps_a_truncation_from_the_true_final_obs(in_tmp, monkeypatch, terminate_at, bootstraps):
    env_id = f"LucidRL/Timed{terminate_at}-v0"
    gym.register(env_id, entry_point=TimedEnv, max_episode_steps=3, kwargs={"terminate_at": terminate_at})
    made, seen = [], []
    real_mlp, real_returns = rf.mlp, rf.compute_discounted_returns
    monkeypatch.setattr(rf, "mlp", lambda *a, **k: made.append(real_mlp(*a, **k)) or made[-1])

    def spy(rewards, bootstrap_values, valid, gamma):
        with torch.no_grad():  # the baseline has not been updated yet in this iteration
            expected = made[-1](torch.tensor([[3.0, 1.0]])).item()  # b(final obs [3, 1])
        seen.append((bootstrap_values.clone(), valid.clone(), expected))
        return real_returns(rewards, bootstrap_values, valid, gamma)

    monkeypatch.setattr(rf, "compute_discounted_returns", spy)
    rf.train(rf.Args(env_id=env_id, num_envs=2, total_timesteps=6, eval_episodes=1))
    bootstrap_values, valid, expected = seen[0]
    assert valid.tolist() == [[1.0, 1.0]] * 3
    if bootstraps:
        assert bootstrap_values[:2].abs().sum() == 0
        assert bootstrap_values[2].tolist() == pytest.approx([expected, expected])
    else:
        assert bootstrap_values.abs().sum() == 0


def test_gaussian_log_prob_is_of_the_unclipped_sample():
    torch.manual_seed(0)
    policy = rf.Policy(3, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), hidden=8)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([0.0, math.log(2.0)]))
    obs = torch.randn(1, 3)
    action = torch.tensor([[2.5, -3.0]])  # far outside the [-1, 1] bounds
    log_prob, entropy = policy.log_prob_and_entropy(obs, action)
    mean, std = policy.net(obs)[0], torch.tensor([1.0, 2.0])
    by_hand = sum(-((action[0, i] - mean[i]) ** 2) / (2 * std[i] ** 2) - math.log(std[i]) - 0.5 * math.log(2 * math.pi)
                  for i in range(2))
    assert log_prob.item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert entropy.item() == pytest.approx(sum(0.5 + 0.5 * math.log(2 * math.pi) + math.log(s) for s in (1.0, 2.0)))


def test_training_keeps_unclipped_actions_for_the_gradient(in_tmp, monkeypatch):
    trained_on = []
    real = rf.Policy.log_prob_and_entropy

    def spy(self, obs, actions):
        trained_on.append(actions.detach().clone())
        return real(self, obs, actions)

    monkeypatch.setattr(rf.Policy, "log_prob_and_entropy", spy)
    rf.train(rf.Args(env_id="Pendulum-v1", num_envs=2, total_timesteps=400, eval_episodes=1))
    actions = torch.cat(trained_on)
    assert actions.abs().max() > 2.0, "Pendulum's bounds are +-2: the stored samples were clipped"


@pytest.mark.learning
def test_solves_cartpole(in_tmp):
    """Measured: seeds 1-3 reach 500 greedy in 300k steps (about 11 s of training each)."""
    result = rf.train(rf.Args(env_id="CartPole-v1", seed=1, total_timesteps=300_000))
    assert np.mean(result["eval_returns"]) >= 475
