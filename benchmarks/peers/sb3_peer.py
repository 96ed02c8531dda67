"""Stable-Baselines3 (and sb3-contrib) at LucidRL's default settings: the peer side of benchmarks/compare.py.

Runs one SB3 algorithm with the hyperparameters of the LucidRL script it is compared with, and prints what
compare.py reads, in CleanRL's format: one `global_step=N, episodic_return=R` line per finished training
episode, then one `SPS: N` line. Not part of the project (SB3 is not in requirements.txt); it runs in its own
virtualenv, beside the same torch and gymnasium as the project:

    python3.11 -m venv ~/venvs/sb3
    ~/venvs/sb3/bin/pip install torch==2.13.0 "gymnasium[classic-control,mujoco]==1.4.0" numpy==2.4.6 \\
        stable-baselines3==2.9.2 sb3-contrib==2.9.2
    ~/venvs/sb3/bin/python benchmarks/peers/sb3_peer.py ppo CartPole-v1 100000 --seed 1

Where SB3 cannot be set to do exactly what the LucidRL script does, the difference is named at the setting
(all of them change the arithmetic by a few operations per update, not the number of network passes).
"""

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecNormalize


class PrintEpisodes(BaseCallback):
    """One line per finished episode (Monitor's info["episode"]), as CleanRL prints them."""

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                print(f"global_step={self.num_timesteps}, episodic_return={info['episode']['r']}", flush=True)
        return True


def linear(initial: float):
    return lambda progress_remaining: progress_remaining * initial  # SB3's progress runs from 1 to 0


def build(algo: str, env_id: str, seed: int, learning_starts: int):
    """The model with the settings of the LucidRL script of the same name (its Args defaults)."""
    if algo == "ppo":  # ppo.py = CleanRL's ppo.py: 4 envs x 128 steps, 4 minibatches, 4 epochs
        envs = make_vec_env(env_id, n_envs=4, seed=seed)
        return PPO("MlpPolicy", envs, learning_rate=linear(2.5e-4), n_steps=128, batch_size=128, n_epochs=4,
                   gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.01, vf_coef=0.5,
                   max_grad_norm=0.5, seed=seed, policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-5)))
    if algo == "ppo_continuous":  # ppo_continuous.py: 1 env x 2048 steps, 32 minibatches, 10 epochs
        envs = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), norm_reward=True, gamma=0.99)
        return PPO("MlpPolicy", envs, learning_rate=linear(3e-4), n_steps=2048, batch_size=64, n_epochs=10,
                   gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5,
                   max_grad_norm=0.5, seed=seed, policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-5)))
    if algo == "a2c":  # a2c.py: 8 envs x 5 steps, RMSprop (alpha 0.99, eps 1e-5) at 7e-4, no GAE
        envs = make_vec_env(env_id, n_envs=8, seed=seed)
        return A2C("MlpPolicy", envs, learning_rate=7e-4, n_steps=5, gamma=0.99, gae_lambda=1.0, ent_coef=0.0,
                   vf_coef=0.5, max_grad_norm=0.5, rms_prop_eps=1e-5, use_rms_prop=True, seed=seed)
    if algo == "dqn":  # dqn.py = CleanRL's dqn.py; SB3's loss is the Huber loss (dqn.py's default: squared)
        envs = make_vec_env(env_id, n_envs=1, seed=seed)
        return DQN("MlpPolicy", envs, learning_rate=2.5e-4, buffer_size=10_000, learning_starts=learning_starts,
                   batch_size=128, tau=1.0, gamma=0.99, train_freq=10, gradient_steps=1, target_update_interval=500,
                   exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.05,
                   max_grad_norm=float("inf"), seed=seed, policy_kwargs=dict(net_arch=[120, 84]))
    envs = make_vec_env(env_id, n_envs=1, seed=seed)
    action_size = envs.action_space.shape[0]
    common = dict(buffer_size=1_000_000, learning_starts=learning_starts, batch_size=256, tau=0.005, gamma=0.99,
                  seed=seed, policy_kwargs=dict(net_arch=[256, 256]))
    if algo == "sac":  # sac.py = CleanRL's: SB3 has one learning rate (3e-4; sac.py's critics use 1e-3) and
        # updates the actor on every step (sac.py: twice every second step, the same count)
        return SAC("MlpPolicy", envs, learning_rate=3e-4, ent_coef="auto", **common)
    noise = NormalActionNoise(np.zeros(action_size), 0.1 * np.ones(action_size) * envs.action_space.high)
    if algo == "td3":
        return TD3("MlpPolicy", envs, learning_rate=3e-4, action_noise=noise, policy_delay=2,
                   target_policy_noise=0.2, target_noise_clip=0.5, **common)
    if algo == "ddpg":  # ddpg.py = CleanRL's: one critic, actor updated every second step, no target smoothing
        common["policy_kwargs"]["n_critics"] = 1
        return TD3("MlpPolicy", envs, learning_rate=3e-4, action_noise=noise, policy_delay=2,
                   target_policy_noise=0.0, target_noise_clip=0.0, **common)
    if algo == "trpo":  # trpo.py: 2 envs x 1024 steps, the RL Zoo's Hopper settings, VecNormalize
        from sb3_contrib import TRPO

        envs = VecNormalize(make_vec_env(env_id, n_envs=2, seed=seed), gamma=0.99)
        return TRPO("MlpPolicy", envs, learning_rate=1e-3, n_steps=1024, batch_size=128, gamma=0.99,
                    gae_lambda=0.95, target_kl=0.01, cg_max_steps=25, cg_damping=0.1, n_critic_updates=20,
                    seed=seed, policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh))
    raise SystemExit(f"unknown algorithm {algo}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algo", choices=["ppo", "ppo_continuous", "a2c", "dqn", "sac", "td3", "ddpg", "trpo"])
    parser.add_argument("env_id")
    parser.add_argument("total_timesteps", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--learning-starts", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model = build(args.algo, args.env_id, args.seed, args.learning_starts)
    start = time.time()
    model.learn(args.total_timesteps, callback=PrintEpisodes())
    print(f"SPS: {int(model.num_timesteps / (time.time() - start))}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
