"""Bring your own environment: a small trading env that every LucidRL script can train on, unchanged.

Importing this module registers "Trading-v0" with Gymnasium. So the id "examples.trading:Trading-v0"
works in any script run from the repository's root: gym.make imports `examples.trading` first, and
the scripts look for the package in the working directory.

    python algorithms/ppo.py --env-id examples.trading:Trading-v0 --total-timesteps 100000
    python algorithms/sac.py --env-id examples.trading:Trading-v0 --env-kwargs '{"continuous": true}'
    python algorithms/dqn.py --env-id examples.trading:Trading-v0 --env-kwargs '{"cost": 0.0}'

The market: one asset whose daily log-returns follow an AR(1) process with momentum,
    r_{t+1} = phi * r_t + sigma * eps_t,  eps_t ~ N(0, 1),
so yesterday's move predicts a fraction phi of today's, and a trader who reads the recent returns can
beat holding. The agent sees the last `window` returns (in percent) and its position, and chooses its
next position: short, flat or long (Discrete(3)), or with `continuous=True` any position in [-1, 1]
(Box). Its reward is the position times the next return, minus a cost per unit of position changed
(in percent points, so rewards are O(1)). Episodes are `episode_length` trading days, ended by a
truncation (the market goes on).

What a policy earns per episode at the defaults (mean over 1,000 seeded episodes; tests/test_examples.py
checks these): random positions lose the costs (-22), holding long earns nothing on average (-0.4 ±
23), and the rule "long after a rise, short after a fall" earns +43: the room a learner has to find.
"""

import gymnasium as gym
import numpy as np


class TradingEnv(gym.Env):
    """Observation (window + 1,) float32: the last `window` log-returns in percent, then the position
    in [-1, 1]. Action: Discrete(3) -> position -1, 0, +1; or Box(-1, 1, (1,)) -> the position."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, window: int = 4, episode_length: int = 250, phi: float = 0.3, sigma: float = 1.0,
                 cost: float = 0.1, continuous: bool = False, render_mode=None):
        if window < 1 or episode_length < 1 or not -1.0 < phi < 1.0 or sigma <= 0.0 or cost < 0.0:
            raise ValueError(f"need window >= 1, episode_length >= 1, -1 < phi < 1, sigma > 0, cost >= 0; got "
                             f"{window}, {episode_length}, {phi}, {sigma}, {cost}")
        self.window, self.episode_length, self.phi, self.sigma, self.cost = window, episode_length, phi, sigma, cost
        self.continuous, self.render_mode = continuous, render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (window + 1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else gym.spaces.Discrete(3)
        self.returns = np.zeros(window)  # the last `window` returns, oldest first
        self.position, self.day = 0.0, 0

    def next_return(self) -> float:
        return self.phi * self.returns[-1] + self.sigma * self.np_random.standard_normal()

    def observation(self) -> np.ndarray:
        return np.append(self.returns, self.position).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # start from the process's stationary spread, so the first days look like any others
        stationary_std = self.sigma / np.sqrt(1.0 - self.phi ** 2)
        self.returns = np.zeros(self.window)
        self.returns[-1] = stationary_std * self.np_random.standard_normal()
        for _ in range(self.window - 1):
            self.returns = np.append(self.returns[1:], self.next_return())
        self.position, self.day = 0.0, 0
        return self.observation(), {}

    def step(self, action):
        if self.continuous:
            new_position = float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        else:
            new_position = float(int(action) - 1)  # 0, 1, 2 -> short, flat, long
        market_return = self.next_return()
        reward = new_position * market_return - self.cost * abs(new_position - self.position)
        self.returns = np.append(self.returns[1:], market_return)
        self.position, self.day = new_position, self.day + 1
        # the market never ends: the last day is a truncation, so the scripts bootstrap from it
        truncated = self.day >= self.episode_length
        return self.observation(), float(reward), False, truncated, {"market_return": market_return}

    def render(self):
        if self.render_mode == "ansi":
            return f"day {self.day}: position {self.position:+.2f}, last return {self.returns[-1]:+.2f}%"


gym.register("Trading-v0", entry_point=TradingEnv)
