"""Independent Q-learning, IQL (Tan 1993): every agent learns its own Q-function as if the others were
part of the environment.

Each agent runs Q-learning on its own observations, actions and rewards: a Q-table when observations
are Discrete (Watkins' update Q(o, a) += alpha (r + gamma max_a' Q(o', a') - Q(o, a))), else a DQN
(Mnih et al. 2015: replay buffer, target network, epsilon-greedy) per agent, or one network shared by all
agents with a one-hot agent id (--shared-network). The learners never see each other's actions, so
each faces a moving target as the others learn: the lesson of the built-in climbing game (Claus &
Boutilier 1998; payoff [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]), where independent learners, averaging over
their partner's exploration, settle on a safe joint action instead of the optimum (0, 0) = 11.
Papers: https://web.media.mit.edu/~cynthiab/Readings/tan-MAS-reinforcementlearning.pdf,
https://www.aaai.org/Papers/AAAI/1998/AAAI98-106.pdf, https://www.nature.com/articles/nature14236.

Environments: "climbing_game" (built in) and PettingZoo's parallel API, as mappo.py: a bare id is
looked up in mpe2, pettingzoo.sisl and pettingzoo.butterfly; "package.module:name" names a module
with parallel_env() or a factory of your own; --env-kwargs go to it. Spaces: Box (vector) or Discrete
observations (all Discrete: tables), Discrete actions, the same number for every agent. Per-agent ends
as in dqn.py: the buffer stores each agent's `terminated` and its true final observation, so an agent
cut by a time limit is bootstrapped and one that terminated is not; an agent absent from a step (it
left before the others) is masked out. The episode return logged is the team's (the sum of every
agent's rewards: twice the payoff in the climbing game).

    python algorithms/iql.py                                          # simple_spread_v3, a DQN per agent
    python algorithms/iql.py --shared-network
    python algorithms/iql.py --env-id climbing_game --total-timesteps 3000   # tabular
    python algorithms/iql.py --model-path runs/.../iql.pt --total-timesteps 0 --capture-video
The last line evaluates saved Q-functions without training (and records the evaluation episodes).
Long runs resume as mappo.py's do: --checkpoint-every N writes everything the run needs (networks or
tables, optimizer, the used replay buffer, every random state, each env's episode in progress as its
seed and actions, replayed on resume); --resume PATH goes on bitwise on CPU.
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
import torch.nn.functional as F
import tyro
from pettingzoo import ParallelEnv

ENV_API = "pettingzoo"  # multi-agent: the test harness probes this script with PettingZoo envs
ENV_FAMILIES = ("mpe2", "pettingzoo.sisl", "pettingzoo.butterfly")  # where a bare --env-id is looked up
EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
LOG_EVERY_UPDATES = 100  # losses go to the figures (and are checked for NaN) every this many updates
VIDEO_FPS = 10
CLIMBING_PAYOFF = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])  # Claus & Boutilier 1998, Table 3


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
    """save the Q-functions to runs/{run_name}/{exp_name}.pt"""
    model_path: Optional[str] = None
    """load saved Q-functions before training; with --total-timesteps 0 this only evaluates them"""
    checkpoint_every: int = 0
    """write a checkpoint to resume from every this many environment steps (0: never); the latest two are kept"""
    checkpoint_dir: Optional[str] = None
    """where checkpoints go; None: runs/{run_name}/checkpoints (keep a long run's outside the work tree)"""
    resume: Optional[str] = None
    """a checkpoint to continue, given with the run's own arguments: the run goes on in its run directory"""
    env_id: str = "simple_spread_v3"
    """"climbing_game", a PettingZoo parallel env in mpe2, pettingzoo.sisl or pettingzoo.butterfly, or "package.module:name\""""
    env_kwargs: str = "{}"
    """JSON keyword arguments for the env's factory (training, evaluation and video envs), e.g. '{"N": 4}'"""
    total_timesteps: int = 1_000_000
    """environment steps of training (one step: every agent acts once, in every env counted)"""
    num_envs: int = 8
    """parallel copies of the environment"""
    learning_rate: float = 5e-4
    """Adam step size of the Q-networks"""
    tabular_step_size: float = 0.1
    """alpha of the Q-table update (Discrete observations)"""
    buffer_size: int = 100_000
    """replay memory, in environment steps (each holds every agent's transition)"""
    gamma: float = 0.99
    """the discount factor"""
    tau: float = 1.0
    """target network update rate (1: copy)"""
    target_network_frequency: int = 2_000
    """environment steps between target network updates"""
    batch_size: int = 128
    """environment steps sampled per gradient step (each agent learns from its transitions of them)"""
    start_e: float = 1.0
    """starting epsilon"""
    end_e: float = 0.05
    """final epsilon"""
    exploration_fraction: float = 0.3
    """fraction of total_timesteps over which epsilon falls from start_e to end_e"""
    learning_starts: int = 10_000
    """environment steps before learning starts (Q-networks; tables learn from the first step)"""
    train_frequency: int = 4
    """environment steps per gradient step"""
    shared_network: bool = False
    """one Q-network for all agents, given a one-hot agent id, instead of one per agent"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """widths of the Q-networks' hidden layers"""
    max_grad_norm: Optional[float] = 10.0
    """clip each agent's gradient norm (None: no clipping)"""
    eval_episodes: int = 10
    """greedy evaluation episodes at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
class ClimbingGame(ParallelEnv):
    """The climbing game as a one-step PettingZoo parallel env: two agents, one observation (0), three
    actions each; both are paid CLIMBING_PAYOFF[action of agent_0, action of agent_1] and the episode ends."""

    metadata = {"name": "climbing_game", "render_modes": ["rgb_array"]}

    def __init__(self, render_mode: Optional[str] = None):
        self.possible_agents, self.agents, self.render_mode = ["agent_0", "agent_1"], [], render_mode
        self.last_actions = None

    def observation_space(self, agent):
        return gym.spaces.Discrete(1)

    def action_space(self, agent):
        return gym.spaces.Discrete(len(CLIMBING_PAYOFF))

    def state(self):
        return np.zeros(1, np.float32)

    def reset(self, seed=None, options=None):
        self.agents, self.last_actions = list(self.possible_agents), None
        return {agent: 0 for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        self.last_actions = (actions["agent_0"], actions["agent_1"])
        payoff = float(CLIMBING_PAYOFF[self.last_actions])
        result = ({agent: 0 for agent in self.agents}, {agent: payoff for agent in self.agents},
                  {agent: True for agent in self.agents}, {agent: False for agent in self.agents},
                  {agent: {} for agent in self.agents})
        self.agents = []
        return result

    def render(self):
        """The payoff matrix in grey levels, the joint action just played outlined in white."""
        frame = np.kron((CLIMBING_PAYOFF + 30) * 6, np.ones((32, 32))).astype(np.uint8)[..., None].repeat(3, -1)
        if self.last_actions is not None:
            row, column = (32 * index for index in self.last_actions)
            frame[row:row + 32, column:column + 2] = frame[row:row + 2, column:column + 32] = 255
        return frame


def find_env_factory(env_id: str):
    """The callable that makes the env: the built-in climbing game, parallel_env of a module
    ("simple_spread_v3", found in one of ENV_FAMILIES, or "package.module:name"), or the named factory
    itself; one line and exit 2 if none."""
    if env_id == "climbing_game":
        return ClimbingGame
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
    known = ["climbing_game"]
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
    fail(f"unknown --env-id {env_id}: not climbing_game nor in {', '.join(ENV_FAMILIES)}" +
         (f". Did you mean {close[0]}?" if close else "; name another as package.module:name"))


def make_env(env_id: str, env_kwargs: dict, render_mode: Optional[str] = None):
    """One PettingZoo parallel env, or one line and exit 2 when it cannot be made."""
    factory = find_env_factory(env_id)
    try:
        env = factory(**env_kwargs, **({"render_mode": render_mode} if render_mode else {}))
    except Exception as error:  # the factory raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {env_id} with --env-kwargs {json.dumps(env_kwargs)}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")
    if not hasattr(env, "possible_agents") or hasattr(env, "agent_selection"):
        fail(f"iql.py needs a PettingZoo parallel env (all agents act at once); {env_id} made a {type(env).__name__}. "
             f"Try its parallel_env, or pettingzoo.utils.aec_to_parallel.")
    return env


def check_spaces(env_id: str, env) -> None:
    """Refuse, with one line saying what fits instead, spaces the learners cannot serve."""
    for agent in env.possible_agents:
        obs_space, action_space = env.observation_space(agent), env.action_space(agent)
        image = isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2
        if not isinstance(obs_space, (gym.spaces.Box, gym.spaces.Discrete)) or image:
            fail(f"iql.py needs vector (Box) or Discrete observations; {env_id}'s agent {agent} has {obs_space}. "
                 f"Try a flattening wrapper in your env factory (e.g. supersuit.flatten_v0), or a CNN agent for images.")
        if not isinstance(action_space, gym.spaces.Discrete):
            fail(f"iql.py needs Discrete actions; {env_id}'s agent {agent} has {action_space}. Try the env's discrete "
                 f"variant (for mpe2: '{{\"continuous_actions\": false}}').")
    action_counts = {int(env.action_space(agent).n) for agent in env.possible_agents}
    if len(action_counts) > 1:
        fail(f"iql.py needs the same number of actions for every agent; {env_id}'s agents have {sorted(action_counts)}. "
             f"Try one env per group of alike agents.")


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
    An env is reset on the step its last agent leaves (Gymnasium's SAME_STEP autoreset): that step returns
    the new episode's observations, and every agent's true last observation of the step in `final_obs`.
    Agents absent from a step are zeros and alive = False. Every episode starts from a seed drawn from
    the run's own generator, and the actions since are kept: an env's state rarely pickles (mpe2's holds a
    pygame surface), so a checkpoint holds these and rebuilds each episode in progress by replaying it."""

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

    def encode_all(self, observations: dict) -> np.ndarray:
        """(num_agents, obs_size): each present agent's observation, zeros for the absent."""
        return np.stack([encode(observations[agent], space, self.obs_size) if agent in observations
                         else np.zeros(self.obs_size, np.float32) for agent, space in zip(self.agents, self.obs_spaces)])

    def reset_env(self, i: int) -> dict:
        self.episode_seeds[i], self.episode_actions[i] = int(self.seed_generator.integers(2 ** 31)), []
        return self.envs[i].reset(seed=self.episode_seeds[i])[0]

    def act(self, i: int, actions: np.ndarray) -> tuple:
        """Env i steps with its present agents' actions (num_agents,); the absent ones' are dropped."""
        self.episode_actions[i].append(actions.copy())
        env = self.envs[i]
        return env.step({agent: int(actions[k]) for k, agent in enumerate(self.agents) if agent in env.agents})

    def reset(self) -> tuple:
        return np.stack([self.encode_all(self.reset_env(i)) for i in range(self.num_envs)]), self.alive()

    def alive(self) -> np.ndarray:
        return np.array([[agent in env.agents for agent in self.agents] for env in self.envs])  # (num_envs, num_agents)

    def step(self, actions: np.ndarray) -> tuple:
        """actions (num_envs, num_agents) -> obs, rewards, terminations, truncations (per agent), alive,
        final_obs, and the (env index, team return, length) of each episode that ended."""
        shape = (self.num_envs, self.num_agents)
        obs = np.zeros((*shape, self.obs_size), np.float32)
        final_obs = np.zeros_like(obs)
        rewards, terminations, truncations = np.zeros(shape), np.zeros(shape, bool), np.zeros(shape, bool)
        ended_episodes = []
        for i, env in enumerate(self.envs):
            observations, reward, terminated, truncated, _ = self.act(i, actions[i])
            for k, agent in enumerate(self.agents):
                rewards[i, k] = reward.get(agent, 0.0)
                terminations[i, k], truncations[i, k] = terminated.get(agent, False), truncated.get(agent, False)
            final_obs[i] = self.encode_all(observations)
            obs[i] = self.encode_all({agent: observations[agent] for agent in env.agents})
            self.episode_returns[i] += rewards[i].sum()
            self.episode_lengths[i] += 1
            if not env.agents:  # the last agent left: the episode is over for everyone
                ended_episodes.append((i, float(self.episode_returns[i]), int(self.episode_lengths[i])))
                self.episode_returns[i], self.episode_lengths[i] = 0.0, 0
                obs[i] = self.encode_all(self.reset_env(i))
        return obs, rewards, terminations, truncations, self.alive(), final_obs, ended_episodes

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

    def close(self) -> None:
        for env in self.envs:
            env.close()


# ---------------------------------------------------------------------------------------- Learners
def mlp(input_size: int, hidden_sizes: tuple, output_size: int) -> nn.Sequential:
    layers, width = [], input_size
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, output_size))


def with_agent_id(inputs: torch.Tensor) -> torch.Tensor:
    """(..., num_agents, size) -> (..., num_agents, size + num_agents): each agent's row gets its one-hot id."""
    num_agents = inputs.shape[-2]
    agent_ids = torch.eye(num_agents, device=inputs.device).expand(*inputs.shape[:-1], num_agents)
    return torch.cat([inputs, agent_ids], dim=-1)


class QNetworks(nn.Module):
    """Every agent's Q-values, (..., num_agents, obs_size) -> (..., num_agents, n_actions): one network per
    agent (independent learners), or one shared network that is told which agent it answers for."""

    def __init__(self, obs_size: int, num_agents: int, n_actions: int, hidden_sizes: tuple, shared: bool):
        super().__init__()
        self.shared = shared
        self.networks = nn.ModuleList([mlp(obs_size + num_agents, hidden_sizes, n_actions)] if shared else
                                      [mlp(obs_size, hidden_sizes, n_actions) for _ in range(num_agents)])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return self.networks[0](with_agent_id(obs))
        return torch.stack([network(obs[..., k, :]) for k, network in enumerate(self.networks)], dim=-2)


class QTables:
    """One Q-table per agent, (num_agents, n_observations, n_actions), for Discrete observations (given
    one-hot, as the networks get them). Starts at zero."""

    def __init__(self, num_agents: int, n_observations: int, n_actions: int):
        self.q = np.zeros((num_agents, n_observations, n_actions))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """(..., num_agents, n_observations) one-hot -> (..., num_agents, n_actions)."""
        return self.q[np.arange(self.q.shape[0]), obs.argmax(-1)]

    def update(self, obs, actions, rewards, final_obs, terminations, alive, gamma: float, step_size: float) -> None:
        """Q-learning (Watkins 1989) for every present agent of every env at once, each on its own
        transition: Q(o, a) += alpha (r + gamma (1 - terminated) max_a' Q(o', a') - Q(o, a)), where o' is the
        agent's true next (or final) observation. Shapes: (num_envs, num_agents[, n_observations])."""
        targets = rewards + gamma * (1.0 - terminations) * self(final_obs).max(-1)  # (num_envs, num_agents)
        states = obs.argmax(-1)
        # one env at a time (its agents, each in its own table, at once): two envs that hit the same table
        # cell both count, one after the other
        for env in range(len(obs)):
            agents = np.flatnonzero(alive[env])
            cells = (agents, states[env, agents], actions[env, agents])
            self.q[cells] += step_size * (targets[env, agents] - self.q[cells])

    def state_dict(self) -> dict:
        return {"q": torch.from_numpy(self.q.copy())}

    def load_state_dict(self, state: dict) -> None:
        self.q[...] = state["q"].numpy()


class ReplayBuffer:
    """Circular storage of whole environment steps: every agent's observation, action, reward, true next
    observation, termination, and whether it was present; (capacity, num_agents, ...)."""

    STORED = ("obs", "actions", "rewards", "next_obs", "terminations", "alive")

    def __init__(self, capacity: int, num_agents: int, obs_size: int, device: torch.device):
        self.capacity, self.pos, self.size, self.device = capacity, 0, 0, device
        self.obs = torch.zeros((capacity, num_agents, obs_size))
        self.actions = torch.zeros((capacity, num_agents), dtype=torch.long)
        self.rewards = torch.zeros((capacity, num_agents))
        self.next_obs = torch.zeros((capacity, num_agents, obs_size))
        self.terminations = torch.zeros((capacity, num_agents))
        self.alive = torch.zeros((capacity, num_agents), dtype=torch.bool)

    def add(self, *rows: np.ndarray) -> None:
        """One vector step: each of STORED as (num_envs, num_agents, ...), wrapping at capacity."""
        index = (self.pos + np.arange(len(rows[0]))) % self.capacity
        for name, values in zip(self.STORED, rows):
            getattr(self, name)[index] = torch.as_tensor(values, dtype=getattr(self, name).dtype)
        self.pos = int((self.pos + len(rows[0])) % self.capacity)
        self.size = min(self.size + len(rows[0]), self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple:
        index = torch.randint(self.size, (batch_size,), generator=generator)
        return tuple(getattr(self, name)[index].to(self.device) for name in self.STORED)

    def state_dict(self) -> dict:
        """The used rows only, copied."""
        return {"pos": self.pos, "size": self.size, **{name: getattr(self, name)[:self.size].clone() for name in self.STORED}}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        for name in self.STORED:
            getattr(self, name)[:self.size] = state[name]


# ---------------------------------------------------------------------------------------- Math
def linear_schedule(start_e: float, end_e: float, duration: int, t: int) -> float:
    """Epsilon falls linearly from start_e to end_e over `duration` steps, then stays."""
    return max(end_e, start_e + (end_e - start_e) * t / max(duration, 1))


def td_targets(rewards, terminations, next_q_target, gamma: float) -> torch.Tensor:
    """Each agent's own target y = r + gamma * (1 - terminated) * max_a' Q_target(o', a') (Mnih et al. 2015),
    o' its true next observation (the final one where a time limit cut it: bootstrapped); (batch, num_agents)."""
    return rewards + gamma * (1.0 - terminations) * next_q_target.max(-1).values


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Each agent explores on its own: (num_envs, num_agents, n_actions) -> actions (num_envs, num_agents)."""
    explore = rng.random(q_values.shape[:-1]) < epsilon
    return np.where(explore, rng.integers(q_values.shape[-1], size=q_values.shape[:-1]), q_values.argmax(-1))


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target (tau = 1 copies)."""
    for target_param, param in zip(target.parameters(), online.parameters()):
        target_param.lerp_(param, tau)


def greedy_q(learner, obs: np.ndarray, device: torch.device) -> np.ndarray:
    """Q-values (..., num_agents, n_actions) of a table or of the networks, as numpy."""
    if isinstance(learner, QTables):
        return learner(obs)
    with torch.inference_mode():
        return learner(torch.as_tensor(obs, device=device)).cpu().numpy()


def evaluate(learner, args: Args, run_dir: str, device: torch.device) -> list:
    """Greedy episodes in a fresh env seeded apart from training; returns their team returns."""
    env = make_env(args.env_id, json.loads(args.env_kwargs), render_mode="rgb_array" if args.capture_video else None)
    envs = ParallelEnvs(lambda: env, 1, args.seed)  # for its encoding of the observations
    returns = []
    for episode in range(args.eval_episodes):
        observations, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        frames = [env.render()] if args.capture_video else []
        episode_return = 0.0
        while env.agents:
            greedy = greedy_q(learner, envs.encode_all(observations), device).argmax(-1)  # (num_agents,)
            observations, rewards, _, _, _ = env.step(
                {agent: int(greedy[k]) for k, agent in enumerate(envs.agents) if agent in env.agents})
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


def random_states(rng: np.random.Generator, sample_generator: torch.Generator) -> dict:
    """Every random stream the run draws from besides the envs' own."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "exploration": rng.bit_generator.state, "sampling": sample_generator.get_state()}


def set_random_states(states: dict, rng: np.random.Generator, sample_generator: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    rng.bit_generator.state = states["exploration"]
    sample_generator.set_state(states["sampling"])


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
    if script != "iql.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of iql.py")
    saved_args = {**saved_args, "hidden_sizes": tuple(saved_args.get("hidden_sizes", ()))}
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
    # A negative step or clip climbs the loss; 0 learns nothing
    if not 0 < args.learning_rate < np.inf or (args.max_grad_norm is not None and args.max_grad_norm <= 0):
        fail(f"--learning-rate must be > 0 and finite, --max-grad-norm > 0 (or left out: no clipping); "
             f"got {args.learning_rate}, {args.max_grad_norm}")
    if not 0.0 <= args.end_e <= args.start_e <= 1.0:  # epsilon falls (linear_schedule holds it at end_e otherwise)
        fail(f"--start-e and --end-e must satisfy 0 <= end-e <= start-e <= 1; got {args.start_e}, {args.end_e}")
    if not 0.0 <= args.exploration_fraction < np.inf:  # the share of the budget over which epsilon falls
        fail(f"--exploration-fraction must be >= 0 and finite; got {args.exploration_fraction}")
    for name in ("num_envs", "eval_episodes", "buffer_size", "batch_size", "train_frequency", "target_network_frequency"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.total_timesteps < 0:
        fail(f"--total-timesteps must be >= 0 (0 only evaluates); got {args.total_timesteps}")
    if args.learning_starts < 0:
        fail(f"--learning-starts must be >= 0; got {args.learning_starts}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size ({args.batch_size}) must not exceed --buffer-size ({args.buffer_size})")
    if args.num_envs > args.buffer_size:  # one vector step's transitions must fit, or they overwrite each other
        fail(f"--num-envs ({args.num_envs}) must not exceed --buffer-size ({args.buffer_size})")
    if not 0.0 < args.tau <= 1.0 or not 0.0 <= args.gamma <= 1.0 or not 0.0 < args.tabular_step_size <= 1.0:
        fail(f"--tau and --tabular-step-size must be in (0, 1] and --gamma in [0, 1]; got {args.tau}, "
             f"{args.tabular_step_size}, {args.gamma}")
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
    tabular = all(isinstance(probe_env.observation_space(agent), gym.spaces.Discrete) for agent in probe_env.possible_agents)
    probe_env.close()
    if not tabular and 0 < args.total_timesteps <= args.learning_starts:
        fail(f"--learning-starts must be below --total-timesteps ({args.total_timesteps}) for Q-networks to learn; "
             f"got {args.learning_starts}")
    envs = ParallelEnvs(lambda: make_env(args.env_id, env_kwargs), args.num_envs, args.seed)
    num_agents, obs_size, n_actions = envs.num_agents, envs.obs_size, envs.n_actions

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if tabular:  # Discrete observations: one Q-table per agent, updated online
        q_learner = QTables(num_agents, obs_size, n_actions)
        learner = {"q_tables": q_learner}  # all that a checkpoint restores
    else:
        q_learner = QNetworks(obs_size, num_agents, n_actions, args.hidden_sizes, args.shared_network).to(device)
        target_network = QNetworks(obs_size, num_agents, n_actions, args.hidden_sizes, args.shared_network).to(device)
        optimizer = torch.optim.Adam(q_learner.parameters(), lr=args.learning_rate)
        rb = ReplayBuffer(args.buffer_size, num_agents, obs_size, device)
        learner = {"q_networks": q_learner, "target_network": target_network, "optimizer": optimizer, "rb": rb}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            q_learner.load_state_dict(saved["q_tables" if tabular else "q_networks"])
        except (RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)
    if not tabular:
        target_network.load_state_dict(q_learner.state_dict())
    rng = np.random.default_rng(args.seed)  # exploration
    sample_generator = torch.Generator().manual_seed(args.seed)  # replay sampling
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

    obs, alive = envs.reset()  # (num_envs, num_agents, obs_size), (num_envs, num_agents)
    episodic_returns = []
    global_step, updates = 0, 0
    start_time = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        obs, alive = checkpoint["obs"], checkpoint["alive"]
        if not np.array_equal(envs.load_state_dict(checkpoint["envs"]), obs):
            fail(f"--resume: replaying {args.env_id}'s episodes does not reach the checkpoint's observations "
                 f"(does the env draw randomness its seed does not set?); it cannot resume")
        set_random_states(checkpoint["random"], rng, sample_generator)
        global_step, updates, episodic_returns = checkpoint["global_step"], checkpoint["updates"], checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    last_print = time.time()
    try:
        while global_step < args.total_timesteps:
            previous_step, global_step = global_step, global_step + args.num_envs
            # ---- act: every agent epsilon-greedy on its own Q-values
            epsilon = linear_schedule(args.start_e, args.end_e, int(args.exploration_fraction * args.total_timesteps), global_step)
            actions = epsilon_greedy(greedy_q(q_learner, obs, device), epsilon, rng)  # (num_envs, num_agents)
            next_obs, rewards, terminations, truncations, next_alive, final_obs, ended_episodes = envs.step(actions)
            # final_obs holds each agent's true next observation, the last one where it left (bootstrapped
            # from if a time limit cut it; terminations drop the bootstrap)
            if tabular:
                q_learner.update(obs, actions, rewards, final_obs, terminations.astype(float), alive, args.gamma,
                                 args.tabular_step_size)
            else:
                rb.add(obs, actions, rewards, final_obs, terminations, alive)
            obs, alive = next_obs, next_alive
            for _, episode_return, episode_length in ended_episodes:
                episodes_csv.writerow([global_step, episode_return, episode_length, f"{time.time() - start_time:.3f}"])
                episodic_returns.append(episode_return)
                if figure_log.on:
                    figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                                    "charts/epsilon": epsilon}, step=global_step)

            # ---- learn (networks): one gradient step per train_frequency env steps, every agent on its own loss
            if not tabular and global_step > args.learning_starts:
                for _ in range(global_step // args.train_frequency - previous_step // args.train_frequency):
                    b_obs, b_actions, b_rewards, b_next_obs, b_terminations, b_alive = rb.sample(args.batch_size, sample_generator)
                    with torch.no_grad():
                        targets = td_targets(b_rewards, b_terminations, target_network(b_next_obs), args.gamma)
                    q_values = q_learner(b_obs).gather(-1, b_actions.unsqueeze(-1)).squeeze(-1)  # (batch, num_agents)
                    # each agent's mean squared TD error over its own present transitions, summed over agents:
                    # each agent's own network gets exactly its own loss's gradient (with --shared-network the
                    # one network gets the sum over agents, and the clip below applies to that sum)
                    squared_errors = F.mse_loss(q_values, targets, reduction="none") * b_alive
                    qf_loss = (squared_errors.sum(0) / b_alive.sum(0).clamp(min=1)).sum()
                    optimizer.zero_grad()
                    qf_loss.backward()
                    if args.max_grad_norm is not None:
                        for network in q_learner.networks:
                            nn.utils.clip_grad_norm_(network.parameters(), args.max_grad_norm)
                    optimizer.step()
                    updates += 1
                    if updates % LOG_EVERY_UPDATES == 0:
                        loss_value = qf_loss.item()
                        if not np.isfinite(loss_value):
                            fail(f"the TD loss became {loss_value} at step {global_step}")
                        if figure_log.on:
                            figure_log.log({"losses/td_loss": loss_value, "losses/q_values": q_values.mean().item(),
                                            "charts/SPS": global_step / max(time.time() - start_time, 1e-9)}, step=global_step)
                if global_step // args.target_network_frequency > previous_step // args.target_network_frequency:
                    soft_update(target_network, q_learner, args.tau)

            # ---- checkpoint when one is due
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "iql.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "updates": updates, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "random": random_states(rng, sample_generator), "envs": envs.state_dict(), "obs": obs, "alive": alive,
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                episodes_file.flush()
                sps = global_step / (time.time() - start_time)
                eta = int(max(args.total_timesteps - global_step, 0) / sps)
                print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | "
                      f"epsilon {epsilon:.3f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({**{name: item.state_dict() for name, item in learner.items() if name != "rb"},
                    "args": vars(args), "global_step": global_step}, model_file)
        print(f"saved the Q-functions to {model_file}")
    eval_returns = evaluate(q_learner, args, run_dir, device)
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
