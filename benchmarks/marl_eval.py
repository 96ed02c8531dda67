"""The final MAPPO / IPPO policies of the simple_spread_v3 rows, evaluated over many episodes, greedy and sampled.

The benchmark rows evaluate each seed's final policy greedily (argmax) over 10 episodes, as every script
does. PPO optimises the stochastic policy, not its argmax, and 10 episodes of a 25-step task with random
starts leave a wide interval; this evaluates each seed's last checkpoint over --episodes episodes both
ways, on the evaluation seeds of mappo.py (args.seed + 100,000 + episode, never seen in training):

    python benchmarks/marl_eval.py --checkpoints-dir ~/lucidrl-checkpoints/full --episodes 100

It prints a markdown table (one row per job: per-seed means, their mean ± sample std over seeds).
"""

import glob
import json
import os
import statistics
from dataclasses import dataclass

import numpy as np
import torch
import tyro

from profiling import load

JOBS = {"MAPPO": "mappo__simple_spread_v3", "IPPO": "mappo__simple_spread_v3__IPPO"}


@dataclass
class Args:
    checkpoints_dir: str = "~/lucidrl-checkpoints/full"
    """benchmarks/run.py's --checkpoints-dir: {job}/seed{N}/checkpoint_*.pt"""
    episodes: int = 100
    """evaluation episodes per seed and mode"""


def sampled_returns(mappo, agent, run_args, episodes: int) -> list:
    """Team returns of episodes whose actions are drawn from the policy (torch seeded per run)."""
    env = mappo.make_env(run_args.env_id, json.loads(run_args.env_kwargs))
    envs = mappo.ParallelEnvs(lambda: env, 1, run_args.seed)  # for its encoding of the observations
    generator = torch.Generator().manual_seed(run_args.seed)
    returns = []
    for episode in range(episodes):
        observations, _ = env.reset(seed=run_args.seed + mappo.EVAL_SEED_OFFSET + episode)
        episode_return = 0.0
        while env.agents:
            with torch.inference_mode():
                obs = torch.as_tensor(envs.encode_all(observations))
                probs = agent.actor(mappo.with_agent_id(obs)).softmax(-1)  # (num_agents, n_actions)
                actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1).numpy()
            observations, rewards, _, _, _ = env.step(
                {name: int(actions[k]) for k, name in enumerate(envs.agents) if name in env.agents})
            episode_return += float(sum(rewards.values()))
        returns.append(episode_return)
    env.close()
    return returns


def main(args: Args) -> None:
    mappo = load("mappo.py")
    torch.set_num_threads(1)
    print(f"| job | mode | per-seed mean over {args.episodes} episodes | mean ± std over seeds |")
    print("|---|---|---|---|")
    for label, job in JOBS.items():
        results = {"greedy": [], "sampled": []}
        for seed_dir in sorted(glob.glob(os.path.join(os.path.expanduser(args.checkpoints_dir), job, "seed*"))):
            path = max(glob.glob(os.path.join(seed_dir, "checkpoint_*.pt")))  # the latest (zero-padded step)
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            run_args = mappo.Args(**{key: value for key, value in checkpoint["args"].items()
                                     if key in mappo.Args.__dataclass_fields__})
            if checkpoint["global_step"] < run_args.total_timesteps:
                print(f"  ({path}: step {checkpoint['global_step']:,} of {run_args.total_timesteps:,}, skipped)")
                continue
            envs = mappo.ParallelEnvs(lambda: mappo.make_env(run_args.env_id, json.loads(run_args.env_kwargs)), 1,
                                      run_args.seed)
            envs.reset()  # sizes the global state
            critic_size = envs.state_size if run_args.centralized_critic else envs.obs_size
            agent = mappo.Agent(envs.obs_size, critic_size, envs.num_agents, envs.n_actions, run_args.hidden_size)
            agent.load_state_dict(checkpoint["learner"]["agent"])
            run_args.eval_episodes = args.episodes
            results["greedy"].append(float(np.mean(mappo.evaluate(agent, run_args, "", torch.device("cpu")))))
            results["sampled"].append(float(np.mean(sampled_returns(mappo, agent, run_args, args.episodes))))
        for mode, means in results.items():
            if means:
                spread = f" ± {statistics.stdev(means):.2f}" if len(means) > 1 else ""
                print(f"| {label} | {mode} | {', '.join(f'{m:.2f}' for m in means)} | "
                      f"{statistics.mean(means):.2f}{spread} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
