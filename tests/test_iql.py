"""iql.py: the climbing game's payoffs and its lesson, the Q-table update and the TD targets per agent
(termination, truncation, absent agents), independent versus shared networks, a time limit bootstrapped
through the loop, a mid-episode resume, and learning on simple_spread_v3."""

import shutil

import numpy as np
import pytest
import torch

from conftest import ALGORITHMS, load_module, read_summary, run_ok

iql = load_module("iql.py")
CUSTOM_ENVS = ALGORITHMS.parent / "tests" / "custom_envs.py"  # copied where a run can import it


def test_the_climbing_game_pays_both_agents_the_payoff_of_their_joint_action_once():
    env = iql.ClimbingGame()
    payoff = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]  # Claus & Boutilier 1998
    for first in range(3):
        for second in range(3):
            observations, _ = env.reset(seed=0)
            assert observations == {"agent_0": 0, "agent_1": 0}
            _, rewards, terminations, truncations, _ = env.step({"agent_0": first, "agent_1": second})
            assert rewards == {"agent_0": payoff[first][second], "agent_1": payoff[first][second]}
            assert all(terminations.values()) and not any(truncations.values()) and env.agents == []
    assert env.render().shape == (96, 96, 3)


def test_the_q_table_update_for_every_present_agent_with_its_own_end():
    """Two envs, two agents, two observations, two actions; gamma 0.5, alpha 0.5. Agent 0 of env 0
    terminates (no bootstrap), agent 1 of env 0 is truncated (bootstrap from its final observation), env 1's
    agent 1 is absent (no update); both envs write the same cell of agent 0 and count one after the other."""
    tables = iql.QTables(num_agents=2, n_observations=2, n_actions=2)
    tables.q[:] = [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]
    one_hot = np.eye(2, dtype=np.float32)
    obs = np.stack([[one_hot[0], one_hot[0]], [one_hot[0], one_hot[1]]])  # (num_envs, num_agents, 2)
    final_obs = np.stack([[one_hot[1], one_hot[1]], [one_hot[1], one_hot[0]]])
    actions = np.array([[1, 0], [1, 1]])
    rewards = np.array([[1.0, 2.0], [3.0, 9.0]])
    terminations = np.array([[1.0, 0.0], [0.0, 0.0]])
    alive = np.array([[True, True], [True, False]])
    tables.update(obs, actions, rewards, final_obs, terminations, alive, gamma=0.5, step_size=0.5)
    # targets use the tables as they were: agent 0, env 0: 1 (terminated); env 1: 3 + 0.5 * max(3, 4) = 5
    after_first = 2.0 + 0.5 * (1.0 - 2.0)
    assert tables.q[0, 0, 1] == pytest.approx(after_first + 0.5 * (5.0 - after_first))
    # agent 1, env 0: truncated, bootstraps: 2 + 0.5 * max(7, 8) = 6
    assert tables.q[1, 0, 0] == pytest.approx(5.0 + 0.5 * (6.0 - 5.0))
    assert tables.q[1, 1, 1] == 8.0, "an absent agent's transition must not be learned from"


def test_td_targets_bootstrap_each_agent_unless_it_terminated():
    rewards = torch.tensor([[1.0, 2.0]])
    terminations = torch.tensor([[1.0, 0.0]])
    next_q = torch.tensor([[[5.0, 9.0], [3.0, 4.0]]])  # (batch, num_agents, n_actions)
    assert iql.td_targets(rewards, terminations, next_q, 0.9)[0].tolist() == pytest.approx([1.0, 2.0 + 0.9 * 4.0])


def test_independent_networks_learn_only_from_their_own_agent_and_a_shared_one_knows_who_asks():
    torch.manual_seed(0)
    networks = iql.QNetworks(obs_size=3, num_agents=2, n_actions=4, hidden_sizes=(8,), shared=False)
    obs = torch.randn(5, 2, 3)
    networks(obs)[:, 0].sum().backward()  # a loss of agent 0 only
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in networks.networks[0].parameters())
    assert all(p.grad is None or not p.grad.any() for p in networks.networks[1].parameters())
    shared = iql.QNetworks(obs_size=3, num_agents=2, n_actions=4, hidden_sizes=(8,), shared=True)
    same_obs = torch.randn(1, 3).expand(2, 3).unsqueeze(0)  # both agents see the same thing
    q_values = shared(same_obs)
    assert q_values.shape == (1, 2, 4) and not torch.allclose(q_values[0, 0], q_values[0, 1])
    assert shared.networks[0][0].in_features == 3 + 2


def test_epsilon_greedy_explores_per_agent():
    rng = np.random.default_rng(0)
    q_values = np.tile(np.array([0.0, 1.0, 0.0]), (1000, 2, 1))
    assert (iql.epsilon_greedy(q_values, 0.0, rng) == 1).all()
    actions = iql.epsilon_greedy(q_values, 1.0, rng)
    assert 0.25 < (actions == 0).mean() < 0.42 and (actions[:, 0] != actions[:, 1]).mean() > 0.5


@pytest.mark.learning
def test_independent_learners_miss_the_climbing_games_optimum(tmp_path, monkeypatch):
    """The lesson: over 20 seeds, tabular IQL rarely ends on the optimal joint action (0, 0) (team return
    22, twice the payoff 11); it settles where a miscoordination cannot cost -30."""
    monkeypatch.chdir(tmp_path)
    ends = []
    for seed in range(1, 21):
        args = iql.Args(env_id="climbing_game", total_timesteps=2000, seed=seed, eval_episodes=1)
        ends.append(iql.train(args)["eval_returns"][0])
    assert sum(end == 22.0 for end in ends) <= 5, ends
    assert all(end >= 10.0 for end in ends), ends  # never a -30 miscoordination, nor the 0 payoffs


def test_more_envs_than_the_buffer_holds_are_refused(tmp_path, monkeypatch, capsys):
    """One vector step writes num_envs transitions: with fewer rows they would overwrite one another."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        iql.train(iql.Args(num_envs=4, buffer_size=2, batch_size=2))
    assert exit_info.value.code == 2 and "--num-envs (4) must not exceed --buffer-size (2)" in capsys.readouterr().err


def test_a_time_limit_is_bootstrapped_not_treated_as_an_end(tmp_path):
    """Each agent earns 1 per step forever, cut by a 5-step limit; at gamma 0.9 the true Q is 10, while a
    learner that took the cut for an end would learn at most 4.1."""
    shutil.copy(CUSTOM_ENVS, tmp_path)
    run_dir = run_ok("iql.py", ["--env-id", "custom_envs:MultiEndless", "--gamma", "0.9", "--total-timesteps", "6000",
                                "--num-envs", "2", "--learning-starts", "500", "--target-network-frequency", "200",
                                "--eval-episodes", "1", "--save-model"], tmp_path)
    networks = iql.QNetworks(1, 2, 2, (64, 64), shared=False)
    networks.load_state_dict(torch.load(run_dir / "iql.pt")["q_networks"])
    with torch.no_grad():
        q_values = networks(torch.zeros(1, 2, 1))
    assert q_values.min().item() > 8.5 and q_values.max().item() < 11.5, q_values


def test_a_run_resumed_mid_episode_replays_its_envs_and_ends_the_same(tmp_path):
    flags = ["--total-timesteps", "240", "--num-envs", "2", "--learning-starts", "50", "--batch-size", "16",
             "--eval-episodes", "1", "--checkpoint-every", "120", "--save-model"]
    run_dir = run_ok("iql.py", flags, tmp_path)
    whole_episodes, whole_model = (run_dir / "episodes.csv").read_text(), torch.load(run_dir / "iql.pt")
    first = sorted((run_dir / "checkpoints").glob("checkpoint_*.pt"))[0]
    checkpoint = torch.load(first, weights_only=False)
    assert all(len(actions) == 10 for actions in checkpoint["envs"]["episode_actions"]), "not mid-episode"
    assert run_ok("iql.py", flags + ["--resume", str(first)], tmp_path) == run_dir
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731 (wall_time aside)
    assert strip((run_dir / "episodes.csv").read_text()) == strip(whole_episodes)
    resumed_model = torch.load(run_dir / "iql.pt")
    assert all(torch.equal(resumed_model["q_networks"][name], tensor) for name, tensor in whole_model["q_networks"].items())


@pytest.mark.learning
@pytest.mark.parametrize("shared", [False, True])
def test_iql_learns_to_answer_each_agents_own_bit(shared, tmp_path):
    """Mirror: each agent is paid for repeating its own bit (team return 6 at best, 3 for random play).
    Seed 1, 3,000 steps: the greedy learners answer right in every evaluation episode."""
    shutil.copy(CUSTOM_ENVS, tmp_path)
    run_dir = run_ok("iql.py", ["--env-id", "custom_envs:Mirror", "--total-timesteps", "3000", "--learning-starts", "500",
                                "--seed", "1"] + (["--shared-network"] if shared else []), tmp_path)
    assert read_summary(run_dir)["eval_returns"] == [6.0] * 10
