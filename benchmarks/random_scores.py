"""The return of the uniform random policy, the 0 of the normalised scores in benchmarks.md.

    python benchmarks/random_scores.py --env-ids CartPole-v1 Acrobot-v1 LunarLander-v3

Mean undiscounted return over --episodes episodes (seeds 0, 1, ...), actions from the action space's
own sampler seeded with the episode's seed. The MuJoCo families use D4RL's published reference scores
instead (Fu et al. 2020, d4rl/infos.py), so that their 0 and 1 match the literature's.
"""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tyro


@dataclass
class Args:
    env_ids: tuple[str, ...] = ("CartPole-v1", "Acrobot-v1", "LunarLander-v3")
    """the environments"""
    episodes: int = 100
    """episodes per environment"""


def random_return(env_id: str, episodes: int) -> np.ndarray:
    env = gym.make(env_id)
    returns = []
    for seed in range(episodes):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.array(returns)


if __name__ == "__main__":
    args = tyro.cli(Args)
    for env_id in args.env_ids:
        returns = random_return(env_id, args.episodes)
        print(f"{env_id}: {returns.mean():.1f} (std {returns.std(ddof=1):.1f}, {args.episodes} episodes)")
