"""mappo.py: per-agent GAE across truncations and terminations, what the actor and the critic see, the agent
id, the value normalisation, agents that leave early, and learning on mpe2's simple_spread_v3."""

import shutil

import numpy as np
import pytest
import torch

from conftest import ALGORITHMS, load_module, read_summary, run_in_process, run_ok

mappo = load_module("mappo.py")
CUSTOM_ENVS = ALGORITHMS.parent / "tests" / "custom_envs.py"  # copied where a run can import it


class Staggered:
    """A parallel env whose agents leave at different steps: agent_0 is truncated at step 4, agent_1
    terminates at step 2. Rewards are (agent index + 1) per step; the observation is [step, agent index];
    the state is [step, 10]. Used to watch ParallelEnvs' masks, final observations and resets."""

    metadata = {"render_modes": [], "name": "staggered_v0"}

    def __init__(self):
        self.possible_agents, self.agents, self.t = ["agent_0", "agent_1"], [], 0

    def observation_space(self, agent):
        import gymnasium as gym

        return gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def action_space(self, agent):
        import gymnasium as gym

        return gym.spaces.Discrete(3)

    def state(self):
        return np.array([self.t, 10.0], np.float32)

    def observe(self, agent):
        return np.array([self.t, self.possible_agents.index(agent)], np.float32)

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        return {agent: self.observe(agent) for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), "an absent agent was given an action"
        self.t += 1
        observations = {agent: self.observe(agent) for agent in self.agents}
        rewards = {agent: float(self.possible_agents.index(agent) + 1) for agent in self.agents}
        terminations = {agent: agent == "agent_1" and self.t == 2 for agent in self.agents}
        truncations = {agent: agent == "agent_0" and self.t == 4 for agent in self.agents}
        self.agents = [agent for agent in self.agents if not (terminations[agent] or truncations[agent])]
        return observations, rewards, terminations, truncations, {agent: {} for agent in observations}

    def close(self):
        pass


def test_agents_that_leave_early_are_masked_and_the_env_resets_when_the_last_leaves():
    envs = mappo.ParallelEnvs(Staggered, 1, seed=0)
    obs, state, alive = envs.reset()
    assert obs.shape == (1, 2, 2) and state.tolist() == [[0.0, 10.0]] and alive.tolist() == [[True, True]]
    actions = np.zeros((1, 2), np.int64)
    seen = [envs.step(actions) for _ in range(4)]
    alive_after = [step[5][0].tolist() for step in seen]
    assert alive_after == [[True, True], [True, False], [True, False], [True, True]]  # reset after step 4
    rewards = [step[2][0].tolist() for step in seen]
    assert rewards == [[1.0, 2.0], [1.0, 2.0], [1.0, 0.0], [1.0, 0.0]]
    terminations, truncations = seen[1][3][0].tolist(), seen[3][4][0].tolist()
    assert terminations == [False, True] and truncations == [True, False]
    # step 4 ended the episode: obs is the new episode's, final_obs and final_state the true last ones
    assert seen[3][0][0, 0].tolist() == [0.0, 0.0] and seen[3][6][0, 0].tolist() == [4.0, 0.0]
    assert seen[3][7][0].tolist() == [4.0, 10.0] and seen[3][1][0].tolist() == [0.0, 10.0]
    assert seen[1][0][0, 1].tolist() == [0.0, 0.0], "a departed agent's observation is zeros"
    assert [step[8] for step in seen] == [[], [], [], [(0, 8.0, 4)]]  # team return 1 * 4 + 2 * 2


class StatelessStaggered(Staggered):
    """Staggered without a global state: the critic's state is then every agent's observation side by side."""

    def state(self):
        raise NotImplementedError


def test_without_a_state_the_next_state_leaves_a_departed_agent_out_and_the_final_state_keeps_it():
    envs = mappo.ParallelEnvs(StatelessStaggered, 1, seed=0)
    _, state, _ = envs.reset()
    assert state.tolist() == [[0.0, 0.0, 0.0, 1.0]]
    envs.step(np.zeros((1, 2), np.int64))
    _, state, *_, final_state, _ = envs.step(np.zeros((1, 2), np.int64))  # agent_1 terminates at step 2
    assert final_state.tolist() == [[2.0, 0.0, 2.0, 1.0]], "the state agent_1 ended in, for bootstrapping"
    assert state.tolist() == [[2.0, 0.0, 0.0, 0.0]], "the next step's state: agent_1's slot is zeros, as later on"


def test_per_agent_gae_with_a_truncation_and_a_termination_inside_the_rollout():
    """Two agents, three steps, gamma 0.9, lambda 0.5. Agent 0 is truncated at t = 1 (bootstrap from its
    final value 5) and goes on in a new episode; agent 1 terminates at t = 0 and is absent at t = 1
    (done there too), then back at t = 2. Every advantage worked by hand."""
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[[1.0, 2.0]], [[1.0, 0.0]], [[1.0, 3.0]]])  # (num_steps, num_envs, num_agents)
    values = torch.tensor([[[0.5, 1.0]], [[0.4, 7.0]], [[0.3, 2.0]]])
    final = 5.0
    next_values = torch.tensor([[[0.4, 7.0]], [[final, 2.0]], [[0.6, 1.5]]])  # V(s_t+1); V(final) where truncated
    terminations = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]])
    dones = torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]], [[0.0, 0.0]]])
    advantages = mappo.compute_gae(rewards, values, next_values, terminations, dones, gamma, lam)
    # agent 0: t = 2 bootstraps from 0.6; t = 1 is truncated (no chain past it, bootstrap from 5); t = 0 chains
    a0_2 = 1.0 + gamma * 0.6 - 0.3
    a0_1 = 1.0 + gamma * final - 0.4
    a0_0 = (1.0 + gamma * 0.4 - 0.5) + gamma * lam * a0_1
    # agent 1: t = 0 terminated (no bootstrap, no chain); t = 2 bootstraps from 1.5
    a1_0, a1_2 = 2.0 - 1.0, 3.0 + gamma * 1.5 - 2.0
    assert advantages[:, 0, 0].tolist() == pytest.approx([a0_0, a0_1, a0_2])
    assert advantages[0, 0, 1].item() == pytest.approx(a1_0) and advantages[2, 0, 1].item() == pytest.approx(a1_2)


def test_the_agent_id_is_a_one_hot_per_agent_row():
    inputs = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # (num_envs, num_agents, size)
    tagged = mappo.with_agent_id(inputs)
    assert tagged.shape == (2, 3, 5)
    assert torch.equal(tagged[..., :2], inputs)
    assert torch.equal(tagged[1, :, 2:], torch.eye(3))


def test_the_centralized_critic_sees_the_state_and_ippo_the_observation():
    obs = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    state = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    central = mappo.critic_inputs(obs, state, centralized=True)
    assert central.shape == (2, 3, 2) and all(torch.equal(central[e, k], state[e]) for e in range(2) for k in range(3))
    assert torch.equal(mappo.critic_inputs(obs, state, centralized=False), obs)


@pytest.mark.parametrize("centralized", [True, False])
def test_the_actor_reads_observations_and_the_critic_the_state_in_a_run(centralized, tmp_path):
    """In a real run on MultiCountdown (observation: 1 number; state: 2), the saved actor takes the
    observation and the agent id, the critic the state (or, IPPO, the observation) and the id."""
    shutil.copy(CUSTOM_ENVS, tmp_path)
    run_dir = run_ok("mappo.py", ["--env-id", "custom_envs:MultiCountdown", "--env-kwargs", '{"num_agents": 3}',
                                  "--total-timesteps", "40", "--num-envs", "2", "--num-steps", "20", "--eval-episodes", "1",
                                  "--save-model"] + ([] if centralized else ["--no-centralized-critic"]), tmp_path)
    saved = torch.load(run_dir / "mappo.pt")["agent"]
    assert saved["actor.0.weight"].shape[1] == 1 + 3
    assert saved["critic.0.weight"].shape[1] == (2 if centralized else 1) + 3


def test_value_norm_keeps_the_running_mean_and_variance_of_every_target():
    norm = mappo.ValueNorm(enabled=True)
    batches = [torch.randn(50) * 3 + 7, torch.randn(20) - 2, torch.randn(200) * 0.5]
    for batch in batches:
        norm.update(batch)
    everything = torch.cat(batches).double()
    assert norm.mean == pytest.approx(everything.mean().item()) and norm.var == pytest.approx(everything.var(unbiased=False).item())
    values = torch.tensor([1.0, -3.0, 10.0])
    assert torch.allclose(norm.denormalize(norm.normalize(values)), values, atol=1e-5)
    assert torch.equal(mappo.ValueNorm(enabled=False).normalize(values), values)


def test_the_value_loss_by_hand_plain_and_clipped():
    new, rollout, returns = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 0.0]), torch.tensor([3.0, 0.5, -0.5])
    assert mappo.value_loss(new, rollout, returns, None).item() == pytest.approx(0.5 * (4.0 + 0.25 + 0.25) / 3)
    # clipped to within 0.2 of the rollout outputs: 0.2, 0.0, -0.2; the larger squared error of each pair counts
    clipped_errors = [(0.2 - 3.0) ** 2, 0.5 ** 2, (-0.2 + 0.5) ** 2]
    assert mappo.value_loss(new, rollout, returns, 0.2).item() == pytest.approx(
        0.5 * (max(4.0, clipped_errors[0]) + max(0.25, clipped_errors[1]) + max(0.25, clipped_errors[2])) / 3)


def test_the_value_clip_window_is_centred_on_what_the_critic_predicts_before_the_update(in_tmp, monkeypatch):
    """With one epoch of one minibatch, each update's value loss sees the critic before any step on this
    rollout: its outputs must be the window's centre. MultiEndless's returns (about 10 at gamma 0.9) move
    the value statistics far from their start, so a centre re-normalised by the updated statistics (the
    bug this guards against) would sit far from the critic's outputs and clip nearly every sample."""
    shutil.copy(CUSTOM_ENVS, in_tmp)
    monkeypatch.syspath_prepend(str(in_tmp))
    seen, value_loss = [], mappo.value_loss

    def recording(new_values, rollout_values, returns, clip_coef):
        seen.append((new_values.detach().clone(), rollout_values.clone(), returns.clone()))
        return value_loss(new_values, rollout_values, returns, clip_coef)

    monkeypatch.setattr(mappo, "value_loss", recording)
    mappo.train(mappo.Args(env_id="custom_envs:MultiEndless", gamma=0.9, num_envs=2, num_steps=10, total_timesteps=60,
                           update_epochs=1, num_minibatches=1, eval_episodes=1))
    assert len(seen) == 3
    for new_values, rollout_values, returns in seen:
        assert torch.allclose(new_values, rollout_values, atol=1e-5), (new_values - rollout_values).abs().max()
    assert (seen[0][2] - seen[0][1]).abs().mean() > 0.5, "the targets are away from the predictions (the test can fail)"


def test_a_time_limit_is_bootstrapped_not_treated_as_an_end(tmp_path):
    """Each agent earns 1 per step forever, cut by a 5-step time limit; at gamma 0.9 the true value is
    1 / (1 - 0.9) = 10, while a critic that took the cut for an end would learn at most
    (1 - 0.9^5) / 0.1 = 4.1. The trained critic must be near 10."""
    shutil.copy(CUSTOM_ENVS, tmp_path)
    run_dir = run_ok("mappo.py", ["--env-id", "custom_envs:MultiEndless", "--gamma", "0.9", "--total-timesteps", "12000",
                                  "--num-envs", "4", "--num-steps", "30", "--eval-episodes", "1", "--save-model"], tmp_path)
    saved = torch.load(run_dir / "mappo.pt")
    agent = mappo.Agent(1, 1, 2, 2, 64)
    agent.load_state_dict(saved["agent"])
    norm = mappo.ValueNorm(True)
    norm.load_state_dict(saved["value_norm"])
    with torch.no_grad():
        values = norm.denormalize(agent.get_value(torch.zeros(1, 2, 1)))
    assert values.min().item() > 8.5 and values.max().item() < 11.5, values


@pytest.mark.learning
def test_mappo_learns_to_answer_each_agents_own_bit(tmp_path):
    """Mirror: each agent is paid for repeating its own bit (team return 6 at best, 3 for random play).
    Seed 1, 6,000 steps: the greedy shared actor answers right for both agents in every evaluation episode."""
    shutil.copy(CUSTOM_ENVS, tmp_path)
    run_dir = run_ok("mappo.py", ["--env-id", "custom_envs:Mirror", "--total-timesteps", "6000", "--num-envs", "8",
                                  "--num-steps", "15", "--seed", "1"], tmp_path)
    assert read_summary(run_dir)["eval_returns"] == [6.0] * 10


def test_a_minibatch_left_with_one_living_agent_is_not_normalised(in_tmp):
    """Staggered has one living agent at steps 3 and 4 of its episodes, so minibatches of one env step hold a
    single advantage there, whose std is nan: the run stopped with "the MAPPO loss became nan". Such a
    minibatch now goes unnormalised; the test env is this module (tests/ is on sys.path)."""
    result = mappo.train(mappo.Args(env_id="test_mappo:Staggered", num_envs=1, num_steps=4, num_minibatches=4,
                                    total_timesteps=16, eval_episodes=1))
    assert len(result["episodic_returns"]) == 4 and np.isfinite(result["eval_returns"]).all()


def test_norm_adv_over_minibatches_of_one_sample_is_refused(in_tmp, monkeypatch, capsys):
    """One agent and minibatches of one env step: no minibatch could ever be normalised."""
    shutil.copy(CUSTOM_ENVS, in_tmp)
    monkeypatch.syspath_prepend(str(in_tmp))
    settings = ["--env-id", "custom_envs:MultiCountdown", "--env-kwargs", '{"num_agents": 1}', "--num-envs", "1",
                "--num-steps", "2", "--num-minibatches", "2", "--total-timesteps", "4"]
    status, stderr = run_in_process("mappo.py", settings, capsys)
    assert status == 2 and "--norm-adv needs minibatches of 2 or more samples" in stderr and "got 1" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not (in_tmp / "runs").exists()
    status, stderr = run_in_process("mappo.py", settings + ["--no-norm-adv", "--eval-episodes", "1"], capsys)
    assert status == 0, stderr[-2000:]
