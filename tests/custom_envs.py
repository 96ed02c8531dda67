"""A user's own env package, as the harness meets it: importing this module registers Countdown-v0, so
every script must accept the id "custom_envs:Countdown-v0" (gym.make imports the module) and pass
--env-kwargs to its constructor. The kwargs choose the spaces, so one env serves every script.
The multi-agent scripts (PettingZoo's parallel API) take "custom_envs:MultiCountdown" the same way, and
their tests use MultiEndless and Mirror."""

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

OBSERVATION_KINDS = ("box", "discrete", "dict", "image")
ACTION_KINDS = ("discrete", "box")
MAX_LENGTH = 20  # the spaces do not depend on the length, so a model reloads into another countdown


class Countdown(gym.Env):
    """Every episode lasts exactly `length` steps and pays 1 per step, whatever the actions: its return
    and length are `length`, so a test reads from a run's episodes and evaluation whether the kwargs
    reached the env. The observation is the number of steps taken, in the space `obs` asks for; the
    discrete form carries its model P (as toy-text envs do) for the planning scripts."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, length: int = 5, obs: str = "box", actions: str = "discrete", render_mode=None):
        if not 1 <= length <= MAX_LENGTH or obs not in OBSERVATION_KINDS or actions not in ACTION_KINDS:
            raise ValueError(f"length must be in [1, {MAX_LENGTH}], obs one of {OBSERVATION_KINDS}, actions one of {ACTION_KINDS}; "
                             f"got {length}, {obs!r}, {actions!r}")
        self.length, self.obs_kind, self.render_mode, self.t = length, obs, render_mode, 0
        counter = gym.spaces.Box(0.0, float(MAX_LENGTH), (1,), np.float32)
        self.observation_space = {
            "box": counter,
            "discrete": gym.spaces.Discrete(MAX_LENGTH + 1),
            "dict": gym.spaces.Dict({"steps": counter, "parity": gym.spaces.Discrete(2)}),
            "image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
        }[obs]
        self.action_space = gym.spaces.Discrete(2) if actions == "discrete" else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        # P[s][a] = [(probability, next_state, reward, terminated)]; states from `length` on are never left
        self.P = {s: {a: [(1.0, s + 1, 1.0, s + 1 == length)] if s < length else [(1.0, s, 0.0, True)]
                      for a in range(2)} for s in range(MAX_LENGTH + 1)}

    def observe(self):
        if self.obs_kind == "discrete":
            return self.t
        if self.obs_kind == "dict":
            return {"steps": np.array([self.t], np.float32), "parity": self.t % 2}
        if self.obs_kind == "image":
            return np.full((8, 8, 3), self.t, np.uint8)
        return np.array([self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(), {}

    def step(self, action):
        self.t += 1
        return self.observe(), 1.0, self.t >= self.length, False, {}

    def render(self):
        return np.full((32, 32, 3), 255 * self.t // self.length, np.uint8)


gym.register("Countdown-v0", entry_point=Countdown, max_episode_steps=100)


class MultiCountdown(ParallelEnv):
    """Countdown for multi-agent scripts, on PettingZoo's parallel API ("custom_envs:MultiCountdown"):
    `num_agents` agents, every episode lasts exactly `length` steps and pays each agent 1 / num_agents per
    step, so the team's return (the sum over agents) and the length are both `length`. The observation is
    the number of steps taken, in the space `obs` asks for; state() is that count and the agent count."""

    metadata = {"render_modes": ["rgb_array"], "name": "multi_countdown_v0"}

    def __init__(self, length: int = 5, obs: str = "box", actions: str = "discrete", num_agents: int = 2,
                 render_mode=None):
        self.single = Countdown(length, obs, actions, render_mode)  # checks the arguments, holds the spaces
        self.possible_agents = [f"agent_{i}" for i in range(num_agents)]
        self.agents, self.render_mode = [], render_mode

    def observation_space(self, agent):
        return self.single.observation_space

    def action_space(self, agent):
        return self.single.action_space

    def state(self):
        return np.array([self.single.t, len(self.possible_agents)], np.float32)

    def reset(self, seed=None, options=None):
        observation, _ = self.single.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return {agent: observation for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        observation, _, terminated, _, _ = self.single.step(0)
        share = 1.0 / len(self.possible_agents)
        result = ({agent: observation for agent in self.agents}, {agent: share for agent in self.agents},
                  {agent: terminated for agent in self.agents}, {agent: False for agent in self.agents},
                  {agent: {} for agent in self.agents})
        if terminated:
            self.agents = []
        return result

    def render(self):
        return self.single.render()


class MultiEndless(ParallelEnv):
    """Two agents, one state, reward 1 each per step; only a time limit (`limit` steps) ends an episode:
    at gamma 0.9 each agent's true value is 1 / (1 - 0.9) = 10, while a learner that takes the limit for
    an end learns at most (1 - 0.9^5) / 0.1 = 4.1 (limit 5). For the multi-agent truncation tests."""

    metadata = {"render_modes": [], "name": "multi_endless_v0"}

    def __init__(self, limit: int = 5, render_mode=None):
        self.possible_agents, self.agents, self.limit, self.t = ["agent_0", "agent_1"], [], limit, 0

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 0.0, (1,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def state(self):
        return np.zeros(1, np.float32)

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        return {agent: np.zeros(1, np.float32) for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        self.t += 1
        ended = self.t == self.limit
        result = ({agent: np.zeros(1, np.float32) for agent in self.agents}, {agent: 1.0 for agent in self.agents},
                  {agent: False for agent in self.agents}, {agent: ended for agent in self.agents},
                  {agent: {} for agent in self.agents})
        if ended:
            self.agents = []
        return result


class Mirror(ParallelEnv):
    """Two agents each see a random bit and are paid 1 for answering it (0 otherwise), for 3 steps: the team
    return is 6 for learners that answer right and 3 on average for random play. A learning check that a
    few thousand steps settle, and that a mix-up of agents (rewards, observations, ids) cannot pass."""

    metadata = {"render_modes": [], "name": "mirror_v0"}

    def __init__(self, render_mode=None):
        self.possible_agents, self.agents, self.t = ["agent_0", "agent_1"], [], 0
        self.rng, self.bits = np.random.default_rng(), np.zeros(2, np.int64)

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1.0, (1,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def state(self):
        return self.bits.astype(np.float32)

    def observe(self):
        self.bits = self.rng.integers(2, size=2)
        return {agent: np.array([self.bits[k]], np.float32) for k, agent in enumerate(self.possible_agents)}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t, self.agents = 0, list(self.possible_agents)
        return self.observe(), {agent: {} for agent in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {agent: float(actions[agent] == self.bits[k]) for k, agent in enumerate(self.possible_agents)}
        ended = self.t == 3
        result = (self.observe(), rewards, {agent: ended for agent in self.agents},
                  {agent: False for agent in self.agents}, {agent: {} for agent in self.agents})
        if ended:
            self.agents = []
        return result
