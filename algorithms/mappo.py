"""Multi-agent PPO, MAPPO (Yu et al. 2022): PPO with one actor shared by every agent and a centralised critic.

Each agent acts on its own observation through one shared actor network (parameter sharing; a one-hot
agent id is appended so the agents can still behave differently). The critic, used only in training,
sees the global state (env.state()) and the agent id, and estimates that agent's value: centralised
training, decentralised execution. Advantages come from GAE per agent, over its own rewards, and the
update is ppo.py's (clipped surrogate, clipped value loss, entropy bonus, advantage normalisation,
gradient clipping); the value targets are normalised by running statistics, which the paper's
ablations find to matter (Section 5.1). --no-centralized-critic gives IPPO (the critic sees only the
agent's observation). Paper: https://arxiv.org/abs/2103.01955.

Environments: PettingZoo's parallel API (https://pettingzoo.farama.org). A bare id is looked up in mpe2
(the particle environments, which left PettingZoo for the mpe2 package), pettingzoo.sisl and
pettingzoo.butterfly; "package.module:name" names a module with parallel_env() or a factory of your own.
--env-kwargs go to that factory. Spaces: Box (vector) or Discrete observations, Discrete actions, the
same number of actions for every agent (observations of different sizes are zero-padded). An env
without state() gets the concatenated observations of all agents as its state. An agent that leaves
before the others is masked out of the losses until its episode ends for everyone (the env then
resets); a truncated agent is bootstrapped from V of its true final observation and state, a
terminated one is not. The episode return logged is the team's: the sum of every agent's rewards.

Defaults are the MAPPO paper's MPE settings (lr 7e-4, 10 epochs, entropy 0.01, gradient norm 10, value
normalisation) with feed-forward tanh networks and 32 envs x 50 steps per rollout in 4 minibatches
instead of 128 x 25 in one. Three choices are ppo.py's rather than the official code's
(marlbenchmark/on-policy): one optimizer step on the summed actor and critic losses, clipped at norm 10
together (there, each network is clipped and stepped on its own), advantages normalised per minibatch
(there, over the whole buffer's active agents) and a squared-error value loss (there, Huber by default).
The paper trains for 20M steps; a 2-core CPU here runs about 7M in an hour (2,069 steps/s alone), so
more gradient steps per sample pay: on simple_spread_v3, seed 1, the training return was -45 at 700k
steps with 4 minibatches and -59 with one, and 8 learned no faster than 4 (greedy -37.4 and -37.2 at
1.5M). Results in benchmarks.md; published MPE tables used older forks with other reward sums and are
not comparable.

    python algorithms/mappo.py                                             # simple_spread_v3, 3 agents
    python algorithms/mappo.py --no-centralized-critic                     # IPPO
    python algorithms/mappo.py --env-kwargs '{"N": 4, "max_cycles": 25}'
    python algorithms/mappo.py --env-id my_package.my_envs:my_env          # a module with parallel_env(), or a factory
    python algorithms/mappo.py --model-path runs/.../mappo.pt --total-timesteps 0 --capture-video
The last line evaluates a saved policy without training (and records the evaluation episodes).
Long runs resume as ppo.py's do: --checkpoint-every N writes everything the run needs (networks,
optimizer, value statistics, every random state, and each env's episode in progress as its seed and
actions, replayed on resume), --resume PATH goes on bitwise on CPU.
"""

import csv
import difflib
import glob
import importlib
import json
import os
import pickle
import pkgutil
import platform
import random
import sys
import time
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro

ENV_API = "pettingzoo"  # multi-agent: the test harness probes this script with PettingZoo envs
ENV_FAMILIES = ("mpe2", "pettingzoo.sisl", "pettingzoo.butterfly")  # where a bare --env-id is looked up
EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
VIDEO_FPS = 10


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of random, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """make cuDNN deterministic (CPU runs are deterministic at a fixed thread count anyway)"""
    cuda: bool = True
    """use a GPU when one is available"""
    track: bool = False
    """log to Weights & Biases"""
    tensorboard: bool = False
    """write the same figures as TensorBoard event files into the run directory"""
    wandb_project_name: str = "lucidrl"
    """the W&B project"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    capture_video: bool = False
    """record the evaluation episodes to runs/{run_name}/videos"""
    save_model: bool = False
    """save the model to runs/{run_name}/{exp_name}.pt"""
    model_path: Optional[str] = None
    """load a saved model before training; with --total-timesteps 0 this only evaluates it"""
    checkpoint_every: int = 0
    """write a checkpoint to resume from every this many environment steps (0: never); the latest two are kept"""
    checkpoint_dir: Optional[str] = None
    """where checkpoints go; None: runs/{run_name}/checkpoints (keep a long run's outside the work tree)"""
    resume: Optional[str] = None
    """a checkpoint to continue, given with the run's own arguments: the run goes on in its run directory"""
    env_id: str = "simple_spread_v3"
    """a PettingZoo parallel env: a name in mpe2, pettingzoo.sisl or pettingzoo.butterfly, or "package.module:name\""""
    env_kwargs: str = "{}"
    """JSON keyword arguments for the env's factory (training, evaluation and video envs), e.g. '{"N": 4}'"""
    total_timesteps: int = 3_000_000
    """environment steps of training (one step: every agent acts once, in every env counted)"""
    learning_rate: float = 7e-4
    """Adam step size (actor and critic)"""
    num_envs: int = 32
    """parallel copies of the environment"""
    num_steps: int = 50
    """steps per env in each rollout"""
    anneal_lr: bool = False
    """anneal the learning rate linearly to 0 over training"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the GAE lambda"""
    num_minibatches: int = 4
    """minibatches per epoch (each holds every agent's samples of its steps)"""
    update_epochs: int = 10
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalise advantages within each minibatch"""
    clip_coef: float = 0.2
    """the surrogate clipping epsilon"""
    clip_vloss: bool = True
    """clip the value loss around the critic's rollout-time outputs (Eq. 2 of Yu et al. 2022), as ppo.py does"""
    ent_coef: float = 0.01
    """weight of the entropy bonus"""
    vf_coef: float = 1.0
    """weight of the value loss (the MAPPO paper trains its critic with its own optimizer at weight 1)"""
    max_grad_norm: float = 10.0
    """clip the global gradient norm"""
    centralized_critic: bool = True
    """the critic sees the global state (MAPPO); --no-centralized-critic: only the agent's observation (IPPO)"""
    value_norm: bool = True
    """regress the critic on value targets normalised by their running mean and standard deviation"""
    hidden_size: int = 64
    """width of the two hidden layers of the actor and of the critic"""
    eval_episodes: int = 10
    """greedy evaluation episodes at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
def find_env_factory(env_id: str):
    """The callable that makes the env: parallel_env of a module ("simple_spread_v3", found in one of
    ENV_FAMILIES, or "package.module:name"), or the named factory itself; one line and exit 2 if none."""
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        if os.getcwd() not in sys.path:  # let "my_envs:env" find my_envs in the working directory, as `python -m` would
            sys.path.append(os.getcwd())
        try:
            found = getattr(importlib.import_module(module_name), name)
        except ImportError as error:
            fail(f"unknown --env-id {env_id}: {error}")
        except AttributeError:
            fail(f"unknown --env-id {env_id}: module {module_name} has no {name}")
        return getattr(found, "parallel_env", found)
    known = []
    for family in ENV_FAMILIES:
        try:
            package = importlib.import_module(family)
        except ImportError:  # a family whose dependencies are not installed
            continue
        names = [module.name for module in pkgutil.iter_modules(package.__path__) if module.name[-1].isdigit()]
        if env_id in names:
            try:
                return importlib.import_module(f"{family}.{env_id}").parallel_env
            except ImportError as error:
                fail(f"--env-id {env_id} needs a package that is not installed: {error}")
        known += names
    close = difflib.get_close_matches(env_id, known, n=1)
    fail(f"unknown --env-id {env_id}: not in {', '.join(ENV_FAMILIES)}" + (f". Did you mean {close[0]}?" if close else
         "; name another as package.module:name"))


def make_env(env_id: str, env_kwargs: dict, render_mode: Optional[str] = None):
    """One PettingZoo parallel env, or one line and exit 2 when it cannot be made."""
    factory = find_env_factory(env_id)
    try:
        env = factory(**env_kwargs, **({"render_mode": render_mode} if render_mode else {}))
    except Exception as error:  # the factory raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {env_id} with --env-kwargs {json.dumps(env_kwargs)}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")
    if not hasattr(env, "possible_agents") or not hasattr(env, "state") or hasattr(env, "agent_selection"):
        fail(f"mappo.py needs a PettingZoo parallel env (all agents act at once); {env_id} made a {type(env).__name__}. "
             f"Try its parallel_env, or pettingzoo.utils.aec_to_parallel.")
    return env


def check_spaces(env_id: str, env) -> None:
    """Refuse, with one line saying what fits instead, spaces the shared actor cannot serve."""
    for agent in env.possible_agents:
        obs_space, action_space = env.observation_space(agent), env.action_space(agent)
        image = isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2
        if not isinstance(obs_space, (gym.spaces.Box, gym.spaces.Discrete)) or image:
            fail(f"mappo.py needs vector (Box) or Discrete observations; {env_id}'s agent {agent} has {obs_space}. "
                 f"Try a flattening wrapper in your env factory (e.g. supersuit.flatten_v0), or a CNN agent for images.")
        if not isinstance(action_space, gym.spaces.Discrete):
            fail(f"mappo.py needs Discrete actions; {env_id}'s agent {agent} has {action_space}. Try the env's discrete "
                 f"variant (for mpe2: '{{\"continuous_actions\": false}}').")
    action_counts = {int(env.action_space(agent).n) for agent in env.possible_agents}
    if len(action_counts) > 1:
        fail(f"mappo.py shares one actor, which needs the same number of actions for every agent; {env_id}'s agents "
             f"have {sorted(action_counts)}. Try one env per group of alike agents.")


def encode(observation, space: gym.Space, size: int) -> np.ndarray:
    """An observation as a float32 vector of `size`: a Box flattened, a Discrete one-hot, zero-padded."""
    vector = np.zeros(size, np.float32)
    if isinstance(space, gym.spaces.Discrete):
        vector[int(observation) - space.start] = 1.0
    else:
        flat = np.asarray(observation, np.float32).reshape(-1)
        vector[:len(flat)] = flat
    return vector


def space_size(space: gym.Space) -> int:
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


class ParallelEnvs:
    """num_envs copies of one parallel env, stepped in turn, with arrays of (num_envs, num_agents, ...) out.
    An env is reset on the step its last agent leaves, as Gymnasium's SAME_STEP autoreset does: that
    step returns the new episode's observations, and the ended agents' true final observations and the
    final state in `final_obs` and `final_state`. Agents absent from a step are zeros and alive = False.

    Every episode starts from a seed drawn from the run's own generator, and the actions since are kept:
    an env's state rarely pickles (mpe2's holds a pygame surface), so a checkpoint holds these instead
    and rebuilds each episode in progress by replaying it (PettingZoo envs are deterministic given
    their seed and actions)."""

    def __init__(self, make, num_envs: int, seed: int):
        self.envs = [make() for _ in range(num_envs)]
        self.seed_generator = np.random.default_rng(seed)
        self.episode_seeds, self.episode_actions = [0] * num_envs, [[] for _ in range(num_envs)]
        self.agents = list(self.envs[0].possible_agents)
        self.obs_spaces = [self.envs[0].observation_space(agent) for agent in self.agents]
        self.obs_size = max(space_size(space) for space in self.obs_spaces)
        self.n_actions = int(self.envs[0].action_space(self.agents[0]).n)
        self.num_envs, self.num_agents = num_envs, len(self.agents)
        self.episode_returns = np.zeros(num_envs)  # the team's: every agent's rewards summed
        self.episode_lengths = np.zeros(num_envs, dtype=np.int64)
        self.has_state = True
        self.state_size = 0

    def encode_all(self, observations: dict) -> np.ndarray:
        """(num_agents, obs_size): each present agent's observation, zeros for the absent."""
        return np.stack([encode(observations[agent], space, self.obs_size) if agent in observations
                         else np.zeros(self.obs_size, np.float32) for agent, space in zip(self.agents, self.obs_spaces)])

    def global_state(self, env, encoded_obs: np.ndarray) -> np.ndarray:
        """env.state(), flattened; for an env without one, every agent's observation side by side."""
        if self.has_state:
            try:
                return np.asarray(env.state(), np.float32).reshape(-1)
            except NotImplementedError:
                self.has_state = False
        return encoded_obs.reshape(-1)

    def reset_env(self, i: int) -> dict:
        self.episode_seeds[i], self.episode_actions[i] = int(self.seed_generator.integers(2 ** 31)), []
        return self.envs[i].reset(seed=self.episode_seeds[i])[0]

    def act(self, i: int, actions: np.ndarray) -> tuple:
        """Env i steps with its present agents' actions (num_agents,); the absent ones' are dropped."""
        self.episode_actions[i].append(actions.copy())
        env = self.envs[i]
        return env.step({agent: int(actions[k]) for k, agent in enumerate(self.agents) if agent in env.agents})

    def reset(self) -> tuple:
        obs = np.stack([self.encode_all(self.reset_env(i)) for i in range(self.num_envs)])
        state = np.stack([self.global_state(env, obs[i]) for i, env in enumerate(self.envs)])
        self.state_size = state.shape[1]
        return obs, state, self.alive()

    def state_dict(self) -> dict:
        return {"seed_generator": self.seed_generator.bit_generator.state, "episode_seeds": list(self.episode_seeds),
                "episode_actions": [list(actions) for actions in self.episode_actions],
                "episode_returns": self.episode_returns.copy(), "episode_lengths": self.episode_lengths.copy()}

    def load_state_dict(self, state: dict) -> np.ndarray:
        """Each env's episode replayed from its seed and actions; returns the observations it ends on."""
        self.seed_generator.bit_generator.state = state["seed_generator"]
        self.episode_returns[:], self.episode_lengths[:] = state["episode_returns"], state["episode_lengths"]
        obs = []
        for i, env in enumerate(self.envs):
            self.episode_seeds[i], self.episode_actions[i] = state["episode_seeds"][i], []
            observations = env.reset(seed=self.episode_seeds[i])[0]
            for actions in state["episode_actions"][i]:
                observations = self.act(i, actions)[0]
            obs.append(self.encode_all({agent: observations[agent] for agent in env.agents}))
        return np.stack(obs)

    def alive(self) -> np.ndarray:
        return np.array([[agent in env.agents for agent in self.agents] for env in self.envs])  # (num_envs, num_agents)

    def step(self, actions: np.ndarray) -> tuple:
        """actions (num_envs, num_agents) -> obs, state, rewards, terminations, truncations (per agent),
        alive, final_obs, final_state, and the (env index, team return, length) of each episode that ended."""
        shape = (self.num_envs, self.num_agents)
        obs, state = np.zeros((*shape, self.obs_size), np.float32), np.zeros((self.num_envs, self.state_size), np.float32)
        final_obs, final_state = np.zeros_like(obs), np.zeros_like(state)
        rewards, terminations, truncations = np.zeros(shape), np.zeros(shape, bool), np.zeros(shape, bool)
        ended_episodes = []
        for i, env in enumerate(self.envs):
            observations, reward, terminated, truncated, _ = self.act(i, actions[i])
            for k, agent in enumerate(self.agents):
                rewards[i, k] = reward.get(agent, 0.0)
                terminations[i, k], truncations[i, k] = terminated.get(agent, False), truncated.get(agent, False)
            final_obs[i] = self.encode_all(observations)  # the true last observation of an agent that left
            obs[i] = self.encode_all({agent: observations[agent] for agent in env.agents})
            final_state[i] = self.global_state(env, final_obs[i])
            # the next step's state: the env's own, or (without one) the observations of the agents still there
            state[i] = final_state[i] if self.has_state else self.global_state(env, obs[i])
            self.episode_returns[i] += rewards[i].sum()
            self.episode_lengths[i] += 1
            if not env.agents:  # the last agent left: the episode is over for everyone
                ended_episodes.append((i, float(self.episode_returns[i]), int(self.episode_lengths[i])))
                self.episode_returns[i], self.episode_lengths[i] = 0.0, 0
                obs[i] = self.encode_all(self.reset_env(i))
                state[i] = self.global_state(env, obs[i])
        return obs, state, rewards, terminations, truncations, self.alive(), final_obs, final_state, ended_episodes

    def close(self) -> None:
        for env in self.envs:
            env.close()


# ---------------------------------------------------------------------------------------- Agent
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (as ppo.py)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(input_size: int, hidden_size: int, output_size: int, output_std: float) -> nn.Sequential:
    return nn.Sequential(layer_init(nn.Linear(input_size, hidden_size)), nn.Tanh(),
                         layer_init(nn.Linear(hidden_size, hidden_size)), nn.Tanh(),
                         layer_init(nn.Linear(hidden_size, output_size), std=output_std))


def with_agent_id(inputs: torch.Tensor) -> torch.Tensor:
    """(..., num_agents, size) -> (..., num_agents, size + num_agents): each agent's row gets its one-hot id,
    so one shared network can still tell the agents apart."""
    num_agents = inputs.shape[-2]
    agent_ids = torch.eye(num_agents, device=inputs.device).expand(*inputs.shape[:-1], num_agents)
    return torch.cat([inputs, agent_ids], dim=-1)


class Agent(nn.Module):
    """The shared actor, on one agent's observation, and the critic, on the global state (centralised) or the
    agent's observation (IPPO); both are given the agent's one-hot id."""

    def __init__(self, obs_size: int, critic_size: int, num_agents: int, n_actions: int, hidden_size: int):
        super().__init__()
        self.actor = mlp(obs_size + num_agents, hidden_size, n_actions, output_std=0.01)  # starts near uniform
        self.critic = mlp(critic_size + num_agents, hidden_size, 1, output_std=1.0)

    def get_value(self, critic_obs: torch.Tensor) -> torch.Tensor:
        """(..., num_agents, critic_size) -> (..., num_agents), in normalised units when value_norm is on."""
        return self.critic(with_agent_id(critic_obs)).squeeze(-1)

    def get_action(self, obs: torch.Tensor, action: Optional[torch.Tensor] = None):
        """(..., num_agents, obs_size) -> action, log pi(a|o), entropy, each (..., num_agents)."""
        log_probs, probs = categorical(self.actor(with_agent_id(obs)))
        if action is None:
            action = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
        logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs * probs).sum(-1)
        return action, logprob, entropy


# ---------------------------------------------------------------------------------------- Math
def categorical(logits: torch.Tensor) -> tuple:
    """log pi(.|o) and pi(.|o) of the categorical policy (the arithmetic of torch.distributions.Categorical)."""
    log_probs = logits - logits.logsumexp(-1, keepdim=True)
    return log_probs, log_probs.softmax(-1)


def compute_gae(rewards, values, next_values, terminations, dones, gamma: float, gae_lambda: float) -> torch.Tensor:
    """Generalized advantage estimation (Eq. 11-16 of Schulman et al. 2016) for every agent at once, all
    (num_steps, num_envs, num_agents): each agent's own rewards, values and ends.

    next_values[t] is V of the agent's state after step t, V(its true final observation and state) where
    its step t was truncated. delta_t = r_t + gamma * (1 - terminated_t) * next_values[t] - V_t;
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_t+1."""
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * next_values[t] - values[t]
        next_advantage = delta + gamma * gae_lambda * (1.0 - dones[t]) * next_advantage
        advantages[t] = next_advantage
    return advantages


def value_loss(new_values, rollout_values, returns, clip_coef: Optional[float]) -> torch.Tensor:
    """0.5 * (V - target)^2 averaged, all in the critic's normalised units. With clip_coef, Eq. 2 of Yu et al.
    2022 (PPO's value clipping): the larger of that error and the error of V kept within clip_coef of
    rollout_values. rollout_values must be the critic's own outputs at rollout time, so that the window is
    centred on what the critic predicts before this update: re-normalising their reward-unit values with the
    statistics the targets just updated would move the window away from it (far, early in a run), and every
    sample then outside it would get no value gradient (the clamp's). The official MAPPO code centres it
    the same way. Shapes: (samples,) each."""
    if clip_coef is None:
        return 0.5 * ((new_values - returns) ** 2).mean()
    clipped = rollout_values + (new_values - rollout_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max((new_values - returns) ** 2, (clipped - returns) ** 2).mean()


class ValueNorm:
    """Running mean and variance of the value targets (all seen so far, merged batch by batch as in
    Chan et al.'s parallel algorithm, float64). The critic regresses on normalised targets; its outputs
    are denormalised wherever a value in reward units is needed. Off: the identity."""

    def __init__(self, enabled: bool):
        self.enabled, self.mean, self.var, self.count = enabled, 0.0, 1.0, 0

    def update(self, targets: torch.Tensor) -> None:
        if not self.enabled or targets.numel() == 0:
            return
        batch = targets.double()
        batch_mean, batch_var, batch_count = batch.mean().item(), batch.var(unbiased=False).item(), batch.numel()
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.var = (self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * batch_count / total) / total
        self.mean += delta * batch_count / total
        self.count = total

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / np.sqrt(self.var + 1e-8) if self.enabled else values

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        return values * np.sqrt(self.var + 1e-8) + self.mean if self.enabled else values

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def critic_inputs(obs: torch.Tensor, state: torch.Tensor, centralized: bool) -> torch.Tensor:
    """What the critic sees, (num_envs, num_agents, critic_size): the global state (num_envs, state_size)
    repeated for each agent (MAPPO), or each agent's own observation (num_envs, num_agents, obs_size) (IPPO)."""
    return state.unsqueeze(1).expand(-1, obs.shape[1], -1) if centralized else obs


def evaluate(agent: Agent, args: Args, run_dir: str, device: torch.device) -> list:
    """Greedy (argmax) episodes in a fresh env seeded apart from training; returns their team returns."""
    env = make_env(args.env_id, json.loads(args.env_kwargs), render_mode="rgb_array" if args.capture_video else None)
    envs = ParallelEnvs(lambda: env, 1, args.seed)  # for its encoding of the observations
    returns = []
    for episode in range(args.eval_episodes):
        observations, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        frames = [env.render()] if args.capture_video else []
        episode_return = 0.0
        while env.agents:
            with torch.inference_mode():
                obs = torch.as_tensor(envs.encode_all(observations), device=device)
                greedy = agent.actor(with_agent_id(obs)).argmax(-1).cpu().numpy()  # (num_agents,)
            observations, rewards, _, _, _ = env.step(
                {agent_name: int(greedy[k]) for k, agent_name in enumerate(envs.agents) if agent_name in env.agents})
            episode_return += float(sum(rewards.values()))
            if args.capture_video:
                frames.append(env.render())
        returns.append(episode_return)
        if args.capture_video:
            from gymnasium.utils.save_video import save_video

            save_video(frames, f"{run_dir}/videos", fps=VIDEO_FPS, name_prefix=f"eval-episode-{episode}")
    env.close()
    return returns


# ---------------------------------------------------------------------------------------- Checkpoints
# What a resumed run may change: where and how often it checkpoints, logging, the device, the video.
# A run that started from a saved model (--model-path) resumes without it: --resume refuses the two together,
# and the checkpoint holds the weights reached since.
ARGS_A_RESUME_MAY_CHANGE = {"resume", "checkpoint_every", "checkpoint_dir", "track", "tensorboard", "wandb_project_name",
                            "wandb_entity", "model_path", "capture_video", "save_model", "cuda"}
CHECKPOINTS_KEPT = 2  # the latest two: a spare, should the newest be lost with its disk


def random_states() -> dict:
    """Every random stream the run draws from besides the envs' own (actions and minibatch order draw from
    torch's global generator)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_random_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def next_checkpoint(global_step: int, checkpoint_every: int) -> int:
    """The first multiple of checkpoint_every past global_step (0 when checkpoints are off)."""
    return (global_step // checkpoint_every + 1) * checkpoint_every if checkpoint_every else 0


def write_checkpoint(checkpoint: dict, directory: str, global_step: int) -> str:
    """Atomically: a temporary file, synced, then renamed over, so a kill mid-write leaves the previous
    checkpoint whole. Keeps the latest CHECKPOINTS_KEPT."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"checkpoint_{global_step:012d}.pt")  # zero-padded: names sort by step
    with open(path + ".tmp", "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(path + ".tmp", path)
    for old in sorted(glob.glob(os.path.join(directory, "checkpoint_*.pt")))[:-CHECKPOINTS_KEPT]:
        os.remove(old)
    return path


def load_checkpoint(args: Args) -> dict:
    """The checkpoint to resume, refused in one line when it is unreadable, another script's, or made
    with other arguments (beyond ARGS_A_RESUME_MAY_CHANGE)."""
    try:
        # our own file holds numpy arrays, random states and the episodes' actions besides tensors: not weights only
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=False)
        saved_args, script = checkpoint["args"], checkpoint["script"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        fail(f"--resume {args.resume} is not a readable checkpoint (corrupt or truncated?): {str(error).splitlines()[0]}")
    if script != "mappo.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of mappo.py")
    changed = [f"--{name.replace('_', '-')} {saved_args.get(name)} (now {value})" for name, value in vars(args).items()
               if name not in ARGS_A_RESUME_MAY_CHANGE and saved_args.get(name) != value]
    if changed:
        fail(f"--resume needs the run's own arguments; the checkpoint was made with {', '.join(changed)}")
    return checkpoint


# ---------------------------------------------------------------------------------------- Logging
class FigureLog:
    """Sends the run's figures to Weights & Biases (--track) and/or TensorBoard (--tensorboard); both
    are imported only when asked for (they are slow to import and optional)."""

    def __init__(self, args: Args, run_name: str, run_dir: str, resumed: Optional[dict] = None):
        self.wandb = self.writer = None
        if args.track:
            import wandb

            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name, config=vars(args),
                       dir=run_dir, id=resumed and resumed["wandb_run_id"], resume="allow" if resumed else None)
            self.wandb = wandb
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(run_dir, purge_step=resumed and resumed["global_step"])
        self.on = self.wandb is not None or self.writer is not None  # callers skip building figures otherwise

    def log(self, figures: dict, step: int) -> None:
        if self.wandb is not None:
            self.wandb.log(figures, step=step)
        if self.writer is not None:
            for name, value in figures.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------------- Train
def check_args(args: Args) -> None:
    """Arguments that cannot work: one line naming the argument and its allowed range, exit 2."""
    for name, value in vars(args).items():  # NaN passes a check such as "x <= 0": every comparison with NaN is False
        if isinstance(value, float) and np.isnan(value):
            fail(f"--{name.replace('_', '-')} must be a number; got nan")
    if not 0 <= args.seed <= 2**32 - 1:  # np.random.seed's range, one range of seeds for every script
        fail(f"--seed must be in [0, 2**32 - 1]; got {args.seed}")
    if not 0 < args.learning_rate < np.inf or args.max_grad_norm <= 0:  # a negative step or clip climbs the loss; 0 learns nothing
        fail(f"--learning-rate must be > 0 and finite, --max-grad-norm > 0; got {args.learning_rate}, {args.max_grad_norm}")
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "eval_episodes", "hidden_size"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    batch_steps = args.num_envs * args.num_steps
    if args.total_timesteps < 0 or 0 < args.total_timesteps < batch_steps:
        fail(f"--total-timesteps must be 0 (only evaluate) or one rollout ({batch_steps} steps) or more; got {args.total_timesteps}")
    if batch_steps % args.num_minibatches:  # else the last minibatch would be a sliver, stepped on like a full one
        fail(f"--num-minibatches ({args.num_minibatches}) must divide the rollout size {batch_steps} (--num-envs x --num-steps)")
    if not 0.0 <= args.gamma <= 1.0 or not 0.0 <= args.gae_lambda <= 1.0:
        fail(f"--gamma and --gae-lambda must be in [0, 1]; got {args.gamma}, {args.gae_lambda}")
    # a negative coefficient turns its term around (value ascent, entropy descent, a clip window that shuts)
    if not (args.clip_coef > 0 and args.vf_coef >= 0 and args.ent_coef >= 0):
        fail(f"--clip-coef must be > 0, --vf-coef and --ent-coef >= 0; got {args.clip_coef}, {args.vf_coef}, {args.ent_coef}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 (0: no checkpoints); got {args.checkpoint_every}")
    if args.resume is not None and (not os.path.isfile(args.resume) or args.model_path is not None):
        fail(f"--resume {args.resume} must be a checkpoint file, and not combined with --model-path")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"N\": 4}}'; got {args.env_kwargs!r}")


def warn_if_env_differs(saved_args: dict, args: Args) -> None:
    """A model runs in the env it is loaded into; another env with the same spaces is allowed, said aloud."""
    saved = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved != current:
        print(f"warning: --model-path was trained in {saved[0]} with env kwargs {saved[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)


def train(args: Args) -> dict:
    check_args(args)
    checkpoint = load_checkpoint(args) if args.resume is not None else None
    env_kwargs = json.loads(args.env_kwargs)  # a JSON object: check_args made sure
    probe_env = make_env(args.env_id, env_kwargs)
    check_spaces(args.env_id, probe_env)
    probe_env.close()
    envs = ParallelEnvs(lambda: make_env(args.env_id, env_kwargs), args.num_envs, args.seed)
    num_agents, obs_size = envs.num_agents, envs.obs_size
    batch_steps = args.num_envs * args.num_steps
    minibatch_size = batch_steps // args.num_minibatches  # env steps; each holds num_agents samples
    if args.norm_adv and minibatch_size * num_agents < 2:  # the std of a single advantage is nan
        fail(f"--norm-adv needs minibatches of 2 or more samples (env steps x agents); got {minibatch_size * num_agents}")

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    next_obs_np, next_state_np, next_alive_np = envs.reset()
    critic_size = envs.state_size if args.centralized_critic else obs_size
    agent = Agent(obs_size, critic_size, num_agents, envs.n_actions, args.hidden_size).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    value_norm = ValueNorm(args.value_norm)
    learner = {"agent": agent, "optimizer": optimizer, "value_norm": value_norm}  # all that a checkpoint restores
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            agent.load_state_dict(saved["agent"])
            value_norm.load_state_dict(saved["value_norm"])
        except (RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)
    # One torch thread: 64-wide layers gain nothing from a second, and a seed then gives the same run on
    # any core count. Restored on return.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)

    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = checkpoint["run_dir"] if checkpoint else os.path.join("runs", run_name)  # a resumed run goes on in its own
    run_name = os.path.basename(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint_dir = args.checkpoint_dir or os.path.join(run_dir, "checkpoints")
    figure_log = FigureLog(args, run_name, run_dir, resumed=checkpoint)
    episodes_path = os.path.join(run_dir, "episodes.csv")
    episodes_file = open(episodes_path, "w", newline="")
    episodes_csv = csv.writer(episodes_file)
    if checkpoint is None:
        episodes_csv.writerow(["global_step", "episode_return", "episode_length", "wall_time"])
    else:  # the rows up to the checkpoint, and none that the stopped run wrote after it
        episodes_file.write(checkpoint["episodes_csv"])

    # ---- rollout storage, (num_steps, num_envs, num_agents, ...)
    shape = (args.num_steps, args.num_envs, num_agents)
    obs = torch.zeros((*shape, obs_size), device=device)
    critic_obs = torch.zeros((*shape, critic_size), device=device)
    actions = torch.zeros(shape, dtype=torch.long, device=device)
    logprobs, rewards, values = torch.zeros(shape, device=device), torch.zeros(shape, device=device), torch.zeros(shape, device=device)
    critic_outputs = torch.zeros(shape, device=device)  # the critic's normalised outputs; values: in reward units
    terminations, dones = torch.zeros(shape, device=device), torch.zeros(shape, device=device)
    alive = torch.zeros(shape, dtype=torch.bool, device=device)  # the agent acted at this step
    truncations = torch.zeros(shape, dtype=torch.bool, device=device)  # and not terminated
    final_values = torch.zeros(shape, device=device)  # V(true final observation, state) there, reward units

    num_iterations = args.total_timesteps // batch_steps if args.total_timesteps else 0
    episodic_returns = []
    global_step, done_iterations = 0, 0
    start_time = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written (after an iteration's update)
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        next_obs_np, next_state_np, next_alive_np = checkpoint["next"]
        if not np.array_equal(envs.load_state_dict(checkpoint["envs"]), next_obs_np):
            fail(f"--resume: replaying {args.env_id}'s episodes does not reach the checkpoint's observations "
                 f"(does the env draw randomness its seed does not set?); it cannot resume")
        set_random_states(checkpoint["random"])
        global_step, done_iterations = checkpoint["global_step"], checkpoint["iteration"]
        episodic_returns = checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    last_print = time.time()
    try:
        for iteration in range(done_iterations + 1, num_iterations + 1):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

            # ---- collect a rollout: every agent of every env acts through the shared actor at once
            next_obs, next_state = torch.as_tensor(next_obs_np, device=device), torch.as_tensor(next_state_np, device=device)
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step], critic_obs[step] = next_obs, critic_inputs(next_obs, next_state, args.centralized_critic)
                alive[step] = torch.as_tensor(next_alive_np, device=device)
                with torch.inference_mode():
                    action, logprob, _ = agent.get_action(next_obs)  # (num_envs, num_agents) each
                    critic_outputs[step] = agent.get_value(critic_obs[step])
                    values[step] = value_norm.denormalize(critic_outputs[step])
                actions[step], logprobs[step] = action, logprob
                (next_obs_np, next_state_np, reward, terminated, truncated, next_alive_np, final_obs, final_state,
                 ended_episodes) = envs.step(action.cpu().numpy())
                rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
                terminations[step] = torch.as_tensor(terminated, dtype=torch.float32, device=device)
                truncated_only = truncated & ~terminated  # a termination at the limit is an end
                truncations[step] = torch.as_tensor(truncated_only, device=device)
                # an agent's sequence stops where it ends, and at every step it is absent (masked out below)
                dones[step] = torch.as_tensor(terminated | truncated, device=device).logical_or(~alive[step]).float()
                if truncated_only.any():  # bootstrap a time limit from V(true final observation and state)
                    with torch.inference_mode():
                        final_view = critic_inputs(torch.as_tensor(final_obs, device=device),
                                                   torch.as_tensor(final_state, device=device), args.centralized_critic)
                        final_values[step] = value_norm.denormalize(agent.get_value(final_view))
                next_obs, next_state = torch.as_tensor(next_obs_np, device=device), torch.as_tensor(next_state_np, device=device)
                for _, episode_return, episode_length in ended_episodes:
                    episodes_csv.writerow([global_step, episode_return, episode_length, f"{time.time() - start_time:.3f}"])
                    episodic_returns.append(episode_return)
                    if figure_log.on:
                        figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length},
                                       step=global_step)

            # ---- per-agent advantages: next_values is V(s_t+1), replaced by V(final) where the agent was truncated
            with torch.inference_mode():
                last_values = value_norm.denormalize(agent.get_value(critic_inputs(next_obs, next_state, args.centralized_critic)))
            next_values = torch.where(truncations, final_values, torch.cat([values[1:], last_values.unsqueeze(0)]))
            advantages = compute_gae(rewards, values, next_values, terminations, dones, args.gamma, args.gae_lambda)
            returns = advantages + values
            value_norm.update(returns[alive])
            norm_returns = value_norm.normalize(returns)  # the targets, by the statistics updated with them

            # ---- optimise on whole env steps (all agents of a step together), absent agents masked out
            b_obs, b_critic_obs = obs.reshape(batch_steps, num_agents, -1), critic_obs.reshape(batch_steps, num_agents, -1)
            b_actions, b_logprobs, b_alive = actions.reshape(batch_steps, -1), logprobs.reshape(batch_steps, -1), alive.reshape(batch_steps, -1)
            b_advantages, b_returns, b_values = (advantages.reshape(batch_steps, -1), norm_returns.reshape(batch_steps, -1),
                                                 critic_outputs.reshape(batch_steps, -1))
            clipfracs = []
            for epoch in range(args.update_epochs):
                b_inds = torch.randperm(batch_steps, device=device)
                for start in range(0, batch_steps, minibatch_size):
                    mb_inds = b_inds[start:start + minibatch_size]
                    mask = b_alive[mb_inds]  # (minibatch, num_agents): the samples that count
                    _, newlogprob, entropy = agent.get_action(b_obs[mb_inds], b_actions[mb_inds])
                    newvalue = agent.get_value(b_critic_obs[mb_inds])
                    logratio = (newlogprob - b_logprobs[mb_inds])[mask]
                    ratio = logratio.exp()
                    with torch.no_grad():  # http://joschu.net/blog/kl-approx.html
                        approx_kl = ((ratio - 1) - logratio).mean()
                        clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())
                    mb_advantages = b_advantages[mb_inds][mask]
                    # over the minibatch's living agents; where agents have left, fewer than 2 may remain (no std)
                    if args.norm_adv and mb_advantages.numel() > 1:
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                    # Clipped surrogate, Eq. 7 of Schulman et al. 2017; Eq. 1 of Yu et al. 2022 over agents
                    pg_loss = torch.max(-mb_advantages * ratio,
                                        -mb_advantages * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                    newvalue, mb_returns, mb_values = newvalue[mask], b_returns[mb_inds][mask], b_values[mb_inds][mask]
                    v_loss = value_loss(newvalue, mb_values, mb_returns, args.clip_coef if args.clip_vloss else None)
                    entropy_loss = entropy[mask].mean()
                    loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss
                    if not torch.isfinite(loss):  # before the step, while the weights are still finite
                        fail(f"the MAPPO loss became {loss.item()} at step {global_step}")
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()

            sps = global_step / max(time.time() - start_time, 1e-9)
            if figure_log.on:
                figure_log.log({"charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/value_loss": v_loss.item(),
                                "losses/policy_loss": pg_loss.item(), "losses/entropy": entropy_loss.item(),
                                "losses/approx_kl": approx_kl.item(), "losses/clipfrac": torch.stack(clipfracs).mean().item(),
                                "charts/SPS": sps}, step=global_step)

            # ---- checkpoint when one is due: what carries over to the next iteration (not the rollout)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "mappo.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "iteration": iteration, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "random": random_states(), "envs": envs.state_dict(), "next": (next_obs_np, next_state_np, next_alive_np),
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                episodes_file.flush()
                eta = int(max(args.total_timesteps - global_step, 0) / sps)
                print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | "
                      f"ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "value_norm": value_norm.state_dict(),
                    "args": vars(args), "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(agent, args, run_dir, device)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__,
                            "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"charts/SPS": sps, "eval/return_mean": summary["eval_return_mean"],
                    "eval/return_std": summary["eval_return_std"]}, step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS) | greedy evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
