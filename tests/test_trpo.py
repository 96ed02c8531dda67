"""trpo.py: conjugate gradient against numpy, the Fisher-vector product against an explicit Hessian of
the mean KL, the step's scaling to max_kl, the line search's two conditions and its restore, GAE and
the loop's bootstrap from V(true final obs) and its reward scaling, the unclipped action in storage, the
checkpoint's statistics, and learning InvertedPendulum (the numpy rollout policy: test_actor_critic.py)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.distributions import Normal, kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from conftest import NarrowActionEnv, TimedEnv, load_module, run_in_process

trpo = load_module("trpo.py")


class BoxTimedEnv(TimedEnv):
    """conftest's TimedEnv (obs [t, 1], the final obs differs from every reset obs) with a Box action."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def register(env_id: str, entry_point, **kwargs) -> str:
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=entry_point, **kwargs)
    return env_id


def spd_matrix(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(size, size))
    return root @ root.T + 0.5 * np.eye(size)


def test_conjugate_gradient_solves_a_symmetric_positive_definite_system():
    matrix, b = spd_matrix(6), np.random.default_rng(1).normal(size=6)
    matrix_t, b_t = torch.tensor(matrix), torch.tensor(b)
    x = trpo.conjugate_gradient(lambda v: matrix_t @ v, b_t, iterations=20)  # converges (and stops) after 6
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(matrix, b), rtol=1e-8, atol=1e-10)
    # fewer iterations than dimensions: an approximation, but one that already reduces the residual
    partial_x = trpo.conjugate_gradient(lambda v: matrix_t @ v, b_t, iterations=2).numpy()
    assert np.linalg.norm(matrix @ partial_x - b) < np.linalg.norm(b)


class TinyPolicy(nn.Module):
    """A Gaussian policy small enough for an explicit Hessian (3 -> 4 -> 2, plus a log-std): 28 parameters."""

    def __init__(self):
        super().__init__()
        self.actor_mean = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        self.actor_logstd = nn.Parameter(torch.tensor([[0.2, -0.3]]))

    def forward(self, obs):
        mean = self.actor_mean(obs)
        return Normal(mean, self.actor_logstd.expand_as(mean).exp())


@pytest.mark.parametrize("moved", [False, True])
def test_fisher_vector_product_equals_the_explicit_hessian_of_the_mean_kl_times_a_vector(moved):
    """At theta_old (the Fisher matrix) and away from it (the Hessian of the KL is still what it applies)."""
    torch.manual_seed(0)
    policy = TinyPolicy().double()
    obs = torch.randn(16, 3, dtype=torch.float64)
    params = list(policy.actor_mean.parameters()) + [policy.actor_logstd]
    with torch.no_grad():
        old_dist = policy(obs)
        if moved:
            vector_to_parameters(parameters_to_vector(params) + 0.1 * torch.randn(28, dtype=torch.float64), params)
    theta = parameters_to_vector(params).detach()
    names = ["actor_mean.0.weight", "actor_mean.0.bias", "actor_mean.2.weight", "actor_mean.2.bias", "actor_logstd"]
    assert [dict(policy.named_parameters())[name] for name in names] == params  # flat order = params order

    def mean_kl_of(flat):  # the mean KL as an explicit function of the flat parameters
        chunks = flat.split([param.numel() for param in params])
        state = {name: chunk.view_as(param) for name, chunk, param in zip(names, chunks, params)}
        new_dist = torch.func.functional_call(policy, state, (obs,))
        return kl_divergence(old_dist, new_dist).sum(1).mean()

    hessian = torch.autograd.functional.hessian(mean_kl_of, theta)  # (28, 28)
    vector, damping = torch.randn(28, dtype=torch.float64), 0.1
    mean_kl = kl_divergence(old_dist, policy(obs)).sum(1).mean()
    fvp = trpo.make_fisher_vector_product(mean_kl, params, damping)
    torch.testing.assert_close(fvp(vector), hessian @ vector + damping * vector)
    torch.testing.assert_close(fvp(2 * vector), 2 * (hessian @ vector + damping * vector))  # reusable, linear


def test_the_step_is_scaled_so_the_quadratic_kl_estimate_equals_max_kl():
    fisher = torch.tensor(spd_matrix(5, seed=3))
    gradient = torch.tensor(np.random.default_rng(4).normal(size=5))
    step = trpo.natural_gradient_step(gradient, lambda v: fisher @ v, max_kl=0.01, cg_iters=10)
    assert (0.5 * step @ fisher @ step).item() == pytest.approx(0.01, rel=1e-8)
    direction = torch.linalg.solve(fisher, gradient)  # the natural gradient F^-1 g, up to the scale
    torch.testing.assert_close(step / step.norm(), direction / direction.norm())


def test_a_vanishing_gradient_gives_no_step_rather_than_nan():
    """Below the conjugate-gradient tolerance s = 0, so s^T F s = 0: the step is 0 (the line search then
    fails and keeps the policy), not 0 / 0."""
    step = trpo.natural_gradient_step(torch.full((4,), 1e-6), lambda v: v, max_kl=0.01, cg_iters=10)
    assert torch.equal(step, torch.zeros(4))


def quadratic_problem(target):
    """Parameters theta (2,) starting at 0; surrogate = target . theta, 'KL' = 0.5 |theta|^2."""
    theta = nn.Parameter(torch.zeros(2))
    target = torch.tensor(target)
    return [theta], lambda: ((target * theta).sum(), 0.5 * (theta ** 2).sum())


def test_line_search_accepts_a_good_full_step():
    params, terms = quadratic_problem([1.0, 0.0])
    accepted, fraction, surrogate, kl = trpo.line_search(params, torch.tensor([0.1, 0.0]), terms, torch.tensor(0.0),
                                                         max_kl=0.01, steps=10, shrink=0.5)
    assert accepted and fraction == 1.0
    assert params[0].tolist() == pytest.approx([0.1, 0.0]) and kl.item() == pytest.approx(0.005)


def test_line_search_backtracks_until_the_kl_fits():
    params, terms = quadratic_problem([1.0, 0.0])
    # the full step has KL 0.5 * 0.4^2 = 0.08; halved twice, 0.1 -> KL 0.005 <= 0.01 (halved once: 0.02)
    accepted, fraction, _, kl = trpo.line_search(params, torch.tensor([0.4, 0.0]), terms, torch.tensor(0.0),
                                                 max_kl=0.01, steps=10, shrink=0.5)
    assert accepted and fraction == 0.25 and kl.item() <= 0.01
    assert params[0].tolist() == pytest.approx([0.1, 0.0])


@pytest.mark.parametrize("case", ["breaks the KL limit", "does not improve the surrogate"])
def test_line_search_refuses_a_bad_step_and_restores_the_old_parameters(case):
    params, terms = quadratic_problem([1.0, 0.0])
    with torch.no_grad():
        params[0].copy_(torch.tensor([0.05, -0.02]))
    old_surrogate = terms()[0].detach()
    if case == "breaks the KL limit":  # every fraction tried (1, 0.5, 0.25) is still far outside the region
        full_step, steps = torch.tensor([8.0, 0.0]), 3
    else:  # small enough for the KL limit at any fraction, but it lowers the surrogate
        full_step, steps = torch.tensor([-0.01, 0.0]), 10
    accepted, fraction, surrogate, _ = trpo.line_search(params, full_step, terms, old_surrogate, max_kl=0.01,
                                                        steps=steps, shrink=0.5)
    assert not accepted and fraction == 0.0 and surrogate is old_surrogate
    assert params[0].tolist() == [pytest.approx(0.05), pytest.approx(-0.02)]
    assert torch.equal(params[0].data, torch.tensor([0.05, -0.02]))  # bit for bit


def test_surrogate_and_kl_at_the_rollout_policy_are_the_mean_advantage_and_zero():
    agent = trpo.Agent(obs_size=4, action_size=2)
    obs, actions, advantages = torch.randn(8, 4), torch.randn(8, 2), torch.randn(8)
    with torch.no_grad():
        old_dist = agent.get_distribution(obs)
    old_logprobs = old_dist.log_prob(actions).sum(1)
    surrogate, kl = trpo.surrogate_and_kl(agent, old_dist, obs, actions, old_logprobs, advantages)
    assert surrogate.item() == pytest.approx(advantages.mean().item(), abs=1e-6)
    assert kl.item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():  # a std twice as large: KL per dimension log 2 + 1/8 - 1/2 (Gaussians of equal mean)
        agent.actor_logstd.add_(np.log(2.0))
    _, kl = trpo.surrogate_and_kl(agent, old_dist, obs, actions, old_logprobs, advantages)
    assert kl.item() == pytest.approx(2 * (np.log(2.0) + 1 / 8 - 1 / 2), rel=1e-5)


def test_storage_keeps_the_unclipped_action_and_its_log_prob_the_env_gets_it_clipped(in_tmp, monkeypatch):
    """The env receives the sample clipped to its bounds; the update scores the stored, unclipped sample, so
    the surrogate's ratio at the rollout policy is 1 (it would not be if the clipped action were stored)."""
    env_id = register("LucidRL/TrpoNarrow-v0", NarrowActionEnv, max_episode_steps=50)
    NarrowActionEnv.received.clear()
    sampled, ratios = [], []
    real_act, real_terms = trpo.RolloutPolicy.act, trpo.surrogate_and_kl

    def recorded_act(self, obs, rng):
        result = real_act(self, obs, rng)
        sampled.append(result[0].copy())
        return result

    def recorded_terms(agent, old_dist, obs, actions, old_logprobs, advantages):
        with torch.no_grad():
            ratios.append((agent.get_distribution(obs).log_prob(actions).sum(1) - old_logprobs).exp())
        return real_terms(agent, old_dist, obs, actions, old_logprobs, advantages)

    monkeypatch.setattr(trpo.RolloutPolicy, "act", recorded_act)
    monkeypatch.setattr(trpo, "surrogate_and_kl", recorded_terms)
    trpo.train(trpo.Args(env_id=env_id, num_envs=1, num_steps=32, critic_minibatch_size=32, critic_epochs=1,
                         total_timesteps=32, eval_episodes=1))
    sampled = np.concatenate(sampled[:32])  # (32, 2): the rollout's samples
    received = np.stack(NarrowActionEnv.received[:32])
    assert (np.abs(sampled) > 0.1).mean() > 0.8  # the samples mostly lie outside the bounds
    np.testing.assert_array_equal(received, np.clip(sampled, -0.1, 0.1))
    torch.testing.assert_close(ratios[0], torch.ones(32), atol=1e-5, rtol=0)


@pytest.mark.parametrize("terminate_at", [None, 3])
def test_loop_bootstraps_a_truncation_from_v_of_the_normalised_true_final_obs(in_tmp, monkeypatch, terminate_at):
    """Both envs end their episode at the third step: by the time limit (the advantage there is
    r + gamma * V(normalised final obs) - V(s)) or by a termination (r - V(s), no bootstrap)."""
    env_id = register(f"LucidRL/TrpoTimed{terminate_at}-v0", BoxTimedEnv, max_episode_steps=3,
                      kwargs={"terminate_at": terminate_at})
    agents, normalised, seen = [], [], []

    class RecordedAgent(trpo.Agent):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            agents.append(self)

    class RecordedRunningMeanStd(trpo.RunningMeanStd):
        def normalize(self, batch):
            result = super().normalize(batch)
            normalised.append((np.array(batch), result.copy()))
            return result

    def spy(rewards, values, next_values, terminations, dones, gamma, gae_lambda):
        advantages = real_gae(rewards, values, next_values, terminations, dones, gamma, gae_lambda)
        final_inputs = [out for raw, out in normalised if raw.shape[0] == 2 and (raw[:, 0] == 3).all()]
        with torch.no_grad():  # the critic has not been updated yet in this iteration
            final_values = (agents[0].get_value(torch.as_tensor(final_inputs[0], dtype=torch.float32)).numpy()
                            if final_inputs else None)
        seen.append((rewards.copy(), values.copy(), terminations.copy(), dones.copy(), advantages.copy(),
                     final_values))
        return advantages

    real_gae = trpo.compute_gae
    monkeypatch.setattr(trpo, "Agent", RecordedAgent)
    monkeypatch.setattr(trpo, "RunningMeanStd", RecordedRunningMeanStd)
    monkeypatch.setattr(trpo, "compute_gae", spy)
    args = trpo.Args(env_id=env_id, num_envs=2, num_steps=4, critic_minibatch_size=4, total_timesteps=8,
                     eval_episodes=1, gamma=0.9, gae_lambda=0.8)
    trpo.train(args)
    rewards, values, terminations, dones, advantages, final_values = seen[0]
    assert dones[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0]  # the third step ends both episodes
    if terminate_at is None:
        assert terminations.sum() == 0 and final_values is not None
        expected = rewards[2] + args.gamma * final_values - values[2]
    else:
        assert terminations[2].tolist() == [1.0, 1.0]
        assert final_values is None, "a terminated episode's final obs was evaluated for a bootstrap"
        expected = rewards[2] - values[2]
    assert advantages[2].tolist() == pytest.approx(expected.tolist(), abs=1e-6)


def test_the_loop_scales_rewards_by_the_std_of_the_discounted_return(in_tmp, monkeypatch):
    """Reward 1 per step, episodes of 3: the discounted returns run 1, 1.9, 2.71, then restart at 1; each
    reward reaching GAE is 1 / std(every return so far), clipped at 10."""
    env_id = register("LucidRL/TrpoTimedNone-v0", BoxTimedEnv, max_episode_steps=3, kwargs={"terminate_at": None})
    seen = []

    def spy(rewards, *rest):
        seen.append(rewards.copy())
        return real_gae(rewards, *rest)

    real_gae = trpo.compute_gae
    monkeypatch.setattr(trpo, "compute_gae", spy)
    trpo.train(trpo.Args(env_id=env_id, num_envs=2, num_steps=4, critic_minibatch_size=4, total_timesteps=8,
                         eval_episodes=1, gamma=0.9))
    returns_so_far, expected = [], []
    for discounted_return in [1.0, 1.9, 2.71, 1.0]:
        returns_so_far += [discounted_return] * 2
        expected.append(min(1.0 / np.sqrt(np.var(returns_so_far) + 1e-8), 10.0))
    np.testing.assert_allclose(seen[0], np.repeat(np.array(expected)[:, None], 2, axis=1), rtol=1e-3)


def test_only_the_critic_is_trained_by_adam_and_a_failed_line_search_keeps_the_policy(in_tmp, monkeypatch):
    """A line search that never succeeds (no KL is <= -1) leaves the policy exactly as initialised, bit for
    bit, while Adam moves the critic."""
    agents = []

    class RecordedAgent(trpo.Agent):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            agents.append(self)
            self.initial = {name: value.clone() for name, value in self.state_dict().items()}

    monkeypatch.setattr(trpo, "Agent", RecordedAgent)
    real_line_search = trpo.line_search
    monkeypatch.setattr(trpo, "line_search", lambda params, full_step, fn, old, max_kl, steps, shrink:
                        real_line_search(params, full_step, fn, old, -1.0, steps, shrink))  # no KL is <= -1
    result = trpo.train(trpo.Args(env_id="Pendulum-v1", num_envs=1, num_steps=256, critic_epochs=1,
                                  total_timesteps=512, eval_episodes=1))
    assert result["line_search_failures"] == 2
    state = agents[0].state_dict()
    for name, initial in agents[0].initial.items():
        assert torch.equal(state[name], initial) == (not name.startswith("critic")), name


def test_checkpoint_restores_the_normalisation_statistics(in_tmp, monkeypatch):
    """Train briefly, save; the checkpoint holds the trained statistics, a reload evaluates to the same
    returns, and evaluating with default statistics would differ (so a reload that lost them fails)."""
    instances = []

    class RecordedRunningMeanStd(trpo.RunningMeanStd):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            instances.append(self)

    monkeypatch.setattr(trpo, "RunningMeanStd", RecordedRunningMeanStd)
    common = dict(env_id="Pendulum-v1", num_envs=2, num_steps=256, critic_epochs=2, eval_episodes=2)
    trained = trpo.train(trpo.Args(total_timesteps=512, save_model=True, **common))
    obs_rms, return_rms = instances[0], instances[1]  # made in this order by train()
    checkpoint = torch.load(f"{trained['run_dir']}/trpo.pt")
    assert np.array_equal(checkpoint["obs_rms"]["mean"].numpy(), obs_rms.mean)
    assert np.array_equal(checkpoint["obs_rms"]["var"].numpy(), obs_rms.var)
    assert checkpoint["obs_rms"]["count"] == obs_rms.count > 512
    assert np.array_equal(checkpoint["return_rms"]["var"].numpy(), return_rms.var)
    assert checkpoint["return_rms"]["count"] == return_rms.count > 512
    assert not np.allclose(obs_rms.mean, 0.0) and not np.allclose(obs_rms.var, 1.0)

    reloaded = trpo.train(trpo.Args(total_timesteps=0, model_path=f"{trained['run_dir']}/trpo.pt", **common))
    assert reloaded["eval_returns"] == trained["eval_returns"]
    assert np.array_equal(instances[2].mean, obs_rms.mean), "evaluation changed the loaded statistics"
    assert np.array_equal(instances[3].var, return_rms.var), "the reload lost the return statistics"
    agent = trpo.Agent(3, 1)
    agent.load_state_dict(checkpoint["agent"])
    default_stats = trpo.evaluate(agent, trpo.RunningMeanStd((3,)), trpo.Args(**common), trained["run_dir"],
                                  torch.device("cpu"))
    assert default_stats != trained["eval_returns"]


def test_wrong_space_names_the_scripts_to_try(in_tmp, capsys):
    status, stderr = run_in_process("trpo.py", ["--env-id", "CartPole-v1", "--total-timesteps", "0"], capsys)
    assert status == 2
    assert stderr.startswith("trpo.py needs Box observations and Box actions; CartPole-v1 has Box(")
    assert stderr.strip().endswith("and Discrete(2). Try ppo.py or dqn.py.") and len(stderr.strip().splitlines()) == 1


def test_a_nan_stops_the_run_with_a_message(in_tmp, monkeypatch, capsys):
    real_gae = trpo.compute_gae
    monkeypatch.setattr(trpo, "compute_gae", lambda *a: real_gae(*a) * np.nan)
    threads = torch.get_num_threads()  # train() runs on one thread and restores the count only on return
    with pytest.raises(SystemExit) as exit_info:
        trpo.train(trpo.Args(env_id="Pendulum-v1", num_steps=64, num_envs=1, critic_minibatch_size=32,
                             total_timesteps=64))
    torch.set_num_threads(threads)
    assert exit_info.value.code == 2
    assert "the natural-gradient step became nan at step 64" in capsys.readouterr().err


@pytest.mark.learning
def test_trpo_balances_inverted_pendulum(in_tmp):
    """The Zoo's MuJoCo settings (the defaults) for 30,720 steps (15 updates of 2 x 1024). Measured with
    the numpy rollout (2026-12-01): 1000 (the maximum) deterministic on seeds 1-8, 9-15 s each with other
    work running; 20,480 steps also gives 1000 on all eight (the margin)."""
    result = trpo.train(trpo.Args(env_id="InvertedPendulum-v5", seed=1, total_timesteps=30_720))
    assert np.mean(result["eval_returns"]) >= 900
