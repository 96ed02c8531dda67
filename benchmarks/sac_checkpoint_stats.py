"""What a sac.py checkpoint's policy and critic look like at that point of the run: the temperature, the
policy's entropy estimate against its target, how saturated its actions are, and what the critic thinks
of them, on the states the run visited last and on states drawn from the whole replay buffer.

    python benchmarks/sac_checkpoint_stats.py ~/lucidrl-diag/sac_hopper_s1_830k.pt ~/lucidrl-diag/sac_hopper_s1_840k.pt

Per checkpoint and set of states (the buffer's last --states transitions; as many drawn uniformly from it),
one row: alpha; the entropy estimate E[-log pi(a|s)] over one sampled action per state (SAC tunes alpha
to keep it at the target -dim(A)); the share of pre-tanh samples u beyond +-3, +-5 and +-7 (tanh(3) is
0.995: beyond it the action is at the box's edge and Q's gradient through tanh has all but vanished)
and the largest |u|; Q1 at the buffer's actions and at the policy's squashed mean; and how far the mean
log pi would move if the tanh correction were CleanRL's log(1 - tanh(u)^2 + 1e-6) instead of sac.py's
exact one (it differs only where |u| is beyond about 7). Sampling uses --seed, so rows repeat exactly.
"""

import math
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

import gymnasium as gym
import torch
import torch.nn.functional as F
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profiling import load  # noqa: E402  (benchmarks/ is not a package)


@dataclass
class Args:
    checkpoints: tyro.conf.Positional[List[str]]
    """sac.py checkpoints (--checkpoint-every)"""
    states: int = 5000
    """how many states in each set"""
    seed: int = 0
    """seeds the uniform draw of states and the policy's samples"""


# how each column prints; the rest with one decimal
FORMATS = {"alpha": "{:.3f}", "entropy": "{:.2f}", "target": "{:.0f}", "u beyond ±3": "{:.2%}",
           "u beyond ±5": "{:.2%}", "u beyond ±7": "{:.2%}", "log pi (1e-6) - log pi": "{:.4f}"}


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def networks(sac, checkpoint: dict) -> tuple:
    """The checkpoint's actor and first critic, as sac.py builds them."""
    saved, learner, buffer = checkpoint["args"], checkpoint["learner"], checkpoint["replay_buffer"]
    obs_size, action_size = buffer["obs"].shape[1], buffer["actions"].shape[1]
    actor = sac.Actor(obs_size, gym.make(saved["env_id"]).action_space, tuple(saved["hidden_sizes"]))
    actor.load_state_dict(learner["actor"])
    critic = sac.SoftQNetwork(obs_size, action_size, tuple(saved["hidden_sizes"]))
    critic.load_state_dict(learner["qf1"])
    return actor, critic


def statistics(sac, checkpoint: dict, actor, critic, obs: torch.Tensor, actions: torch.Tensor,
               generator: torch.Generator) -> dict:
    """The row's figures for the states `obs` (n, obs_size) and the actions the run took there (n, action_size)."""
    action_size = actions.shape[1]
    with torch.no_grad():
        mean, log_std = actor(obs)  # each (n, action_size)
        u = mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
        log_probs = sac.squashed_gaussian_log_prob(u, mean, log_std, actor.action_scale)  # (n,)
        exact = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # log(1 - tanh(u)^2), as sac.py computes it
        with_epsilon = torch.log(1.0 - torch.tanh(u) ** 2 + 1e-6)
        return {"alpha": checkpoint["log_alpha"].exp().item(), "entropy": -log_probs.mean().item(),
                "target": -float(action_size), **{f"u beyond ±{bound}": (u.abs() > bound).float().mean().item()
                                                  for bound in (3, 5, 7)},
                "largest u": u.abs().max().item(), "Q1(s, a buffer)": critic(obs, actions).mean().item(),
                "Q1(s, mean action)": critic(obs, actor.deterministic(obs)).mean().item(),
                "log pi (1e-6) - log pi": (exact - with_epsilon).sum(dim=1).mean().item()}


def main(args: Args) -> None:
    sac = load("sac.py")
    torch.set_num_threads(1)
    header = None
    for path in args.checkpoints:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
            fail(f"{path} is not a readable checkpoint: {str(error).splitlines()[0]}")
        if checkpoint.get("script") != "sac.py":
            fail(f"{path} is a checkpoint of {checkpoint.get('script')}, not of sac.py")
        actor, critic = networks(sac, checkpoint)
        buffer, generator = checkpoint["replay_buffer"], torch.Generator().manual_seed(args.seed)
        count = min(args.states, buffer["size"])
        last = (torch.arange(buffer["pos"] - count, buffer["pos"]) + buffer["size"]) % buffer["size"]
        drawn = torch.randint(buffer["size"], (count,), generator=generator)
        for name, rows in ((f"last {count:,}", last), (f"{count:,} drawn", drawn)):
            figures = statistics(sac, checkpoint, actor, critic, buffer["obs"][rows], buffer["actions"][rows],
                                 generator)
            if header is None:
                header = list(figures)
                print("| step | states | " + " | ".join(header) + " |")
                print("|---" * (len(header) + 2) + "|")
            print(f"| {checkpoint['global_step']:,} | {name} | "
                  + " | ".join(FORMATS.get(key, "{:.1f}").format(figures[key]) for key in header) + " |")


if __name__ == "__main__":
    main(tyro.cli(Args))
