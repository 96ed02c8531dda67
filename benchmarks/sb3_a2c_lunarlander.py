"""Stable-Baselines3's A2C on LunarLander-v3 with a2c.py's benchmark settings: the reference implementation
of the same algorithm, for the comparison in benchmarks.md's LunarLander-v3 notes. Not part of the
project (SB3 is not in requirements.txt); run it from a scratch virtualenv:

    python3.11 -m venv /tmp/sb3venv
    /tmp/sb3venv/bin/pip install torch==2.13.0 "gymnasium[box2d]==1.4.0" stable-baselines3==2.9.2 tyro==1.0.17
    /tmp/sb3venv/bin/python benchmarks/sb3_a2c_lunarlander.py --seed 1                       # the normalised row
    /tmp/sb3venv/bin/python benchmarks/sb3_a2c_lunarlander.py --seed 1 --total-timesteps 200000 \
        --no-normalize --anneal-lr                                                       # the Zoo's settings

It prints one JSON line: greedy (deterministic) returns over eval_episodes episodes seeded as a2c.py's
evaluation (seed + 100,000 + episode), their mean, and the mean of the last 100 training episodes.
"""

import json
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import tyro
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

EVAL_SEED_OFFSET = 100_000  # as a2c.py
GAMMA, LEARNING_RATE = 0.995, 8.3e-4  # a2c.py's LunarLander rows (--gamma, --learning-rate)


@dataclass
class Args:
    seed: int = 1
    """seed of SB3 and the environments"""
    total_timesteps: int = 1_000_000
    """environment steps of training"""
    normalize: bool = True
    """VecNormalize observations and rewards (a2c.py's --norm-obs --norm-reward)"""
    anneal_lr: bool = False
    """anneal the learning rate linearly to 0 (the Zoo's lin_8.3e-4)"""
    eval_episodes: int = 30
    """greedy evaluation episodes at the end"""


def main(args: Args) -> None:
    torch.set_num_threads(1)  # as a2c.py
    envs = make_vec_env("LunarLander-v3", n_envs=8, seed=args.seed)
    if args.normalize:
        envs = VecNormalize(envs, gamma=GAMMA)

    def learning_rate(progress_remaining: float) -> float:  # SB3's schedule: progress runs from 1 to 0
        return LEARNING_RATE * (progress_remaining if args.anneal_lr else 1.0)

    model = A2C("MlpPolicy", envs, n_steps=5, gamma=GAMMA, learning_rate=learning_rate, ent_coef=1e-5,
                seed=args.seed, verbose=0)
    model.learn(args.total_timesteps)

    env = gym.make("LunarLander-v3")
    eval_returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            action, _ = model.predict(envs.normalize_obs(obs) if args.normalize else obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            episode_return += float(reward)
            done = terminated or truncated
        eval_returns.append(episode_return)
    print(json.dumps({"args": vars(args), "eval_return_mean": float(np.mean(eval_returns)),
                      "last100_return": float(np.mean([info["r"] for info in model.ep_info_buffer])),
                      "eval_returns": eval_returns}))


if __name__ == "__main__":
    main(tyro.cli(Args))
