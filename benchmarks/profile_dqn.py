"""Where a dqn.py run spends its time: environment, acting, storing, sampling, update, the rest.

Wraps the pieces of the real training loop with timers (no change to the script) and runs it:

    python benchmarks/profile_dqn.py --total-timesteps 100000

Any dqn.py argument can be given. The wrappers add about a microsecond per call; the printed total
SPS is that of the timed run.
"""

import sys
from collections import defaultdict

import gymnasium as gym
import torch
import tyro

from profiling import load, timed


def main() -> None:
    dqn = load("dqn.py")
    args = tyro.cli(dqn.Args, args=sys.argv[1:])
    totals = defaultdict(float)
    # The env step includes the vector env, its wrappers and the autoreset.
    wrapper_class = gym.wrappers.vector.RecordEpisodeStatistics
    wrapper_class.step = timed(totals, "environment step", wrapper_class.step)
    dqn.ReplayBuffer.add = timed(totals, "store transitions (buffer add)", dqn.ReplayBuffer.add)
    dqn.ReplayBuffer.sample = timed(totals, "sample a batch", dqn.ReplayBuffer.sample)
    dqn.ActingQNetwork.__call__ = timed(totals, "acting (numpy Q network)", dqn.ActingQNetwork.__call__)
    dqn.QNetwork.forward = timed(totals, "update: forwards", dqn.QNetwork.forward)
    torch.Tensor.backward = timed(totals, "update: backward", torch.Tensor.backward)
    torch.optim.Adam.step = timed(totals, "update: Adam step", torch.optim.Adam.step)
    dqn.soft_update = timed(totals, "target network sync", dqn.soft_update)
    dqn.evaluate = lambda *a, **k: [0.0]  # profile training only

    result = dqn.train(args)
    wall = result["wall_time"]
    print(f"\n{args.total_timesteps:,} steps in {wall:.1f} s = {args.total_timesteps / wall:,.0f} SPS "
          f"({1e6 * wall / args.total_timesteps:.1f} µs per environment step)")
    print(f"{'part':<34}{'seconds':>9}{'share':>8}{'µs/step':>9}")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]) + [("the rest (loop, conversions, logging)",
                                                                            wall - sum(totals.values()))]:
        print(f"{name:<34}{seconds:>9.2f}{seconds / wall:>8.1%}{1e6 * seconds / args.total_timesteps:>9.1f}")


if __name__ == "__main__":
    main()
