"""Would sac.py and td3.py gain from computing their twin critics as one batched network? A measurement,
not a change to the scripts.

TD3's and SAC's critic step runs two Q networks and two target networks, each a 256-256 MLP, on the same
batch. Written as separate nn.Linear stacks (as the scripts do now) that is twelve matrix products of which
four are 256 x 256 at batch 256, each split across the machine's threads. Stacking the two networks'
weights as (2, in, out) tensors runs each layer of both as one torch.baddbmm: the same arithmetic in half
the operations, and on two threads each thread takes one network. This times one critic step (target
forwards without gradients, online forwards, MSE against the min of the targets, backward, fused Adam) both
ways:

    python benchmarks/profile_twin_critics.py
    python benchmarks/profile_twin_critics.py --threads 1 2 --obs-size 11 --action-size 3   # Hopper's sizes

Run it on an idle machine; it alternates the two ways and reports each one's median of --repeats.
"""

import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args:
    obs_size: int = 3
    """Pendulum-v1's observation size"""
    action_size: int = 1
    hidden_size: int = 256
    batch_size: int = 256
    threads: list[int] = field(default_factory=lambda: [2, 1])
    """torch thread counts to time (sac.py and td3.py use torch's default, the machine's cores)"""
    steps: int = 300
    """critic steps per timing"""
    repeats: int = 3


def mlp(in_size: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class TwinCritics(nn.Module):
    """Two Q networks as one: each layer's weights (2, in, out), both networks in one baddbmm per layer."""

    def __init__(self, in_size: int, hidden: int):
        super().__init__()
        sizes = [(in_size, hidden), (hidden, hidden), (hidden, 1)]
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(2, i, o) / i ** 0.5) for i, o in sizes])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(2, 1, o)) for _, o in sizes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, in) -> Q (2, batch)."""
        h = x.expand(2, *x.shape)  # (2, batch, in): both networks see the same batch
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias, h, weight)
            if layer < len(self.weights) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)


def main(args: Args) -> None:
    torch.manual_seed(0)
    in_size = args.obs_size + args.action_size
    x, next_x = torch.randn(args.batch_size, in_size), torch.randn(args.batch_size, in_size)
    rewards = torch.randn(args.batch_size)

    q1, q2, q1_target, q2_target = (mlp(in_size, args.hidden_size) for _ in range(4))
    separate_optimizer = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4, fused=True)

    def separate_step():
        with torch.no_grad():
            target = rewards + 0.99 * torch.min(q1_target(next_x), q2_target(next_x)).view(-1)
        loss = F.mse_loss(q1(x).view(-1), target) + F.mse_loss(q2(x).view(-1), target)
        separate_optimizer.zero_grad()
        loss.backward()
        separate_optimizer.step()

    twins, twins_target = TwinCritics(in_size, args.hidden_size), TwinCritics(in_size, args.hidden_size)
    twins_optimizer = torch.optim.Adam(twins.parameters(), lr=3e-4, fused=True)

    def batched_step():
        with torch.no_grad():
            target = rewards + 0.99 * twins_target(next_x).min(0).values
        # the sum of the two networks' mean squared errors, as separate_step's loss
        loss = F.mse_loss(twins(x), target.expand(2, -1), reduction="none").mean(1).sum()
        twins_optimizer.zero_grad()
        loss.backward()
        twins_optimizer.step()

    def time_per_step(step) -> float:
        for _ in range(args.steps // 10):  # warm up allocator and threads
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return (time.perf_counter() - start) / args.steps * 1e6

    default_threads = torch.get_num_threads()
    print(f"critic step, batch {args.batch_size}, {in_size}-{args.hidden_size}-{args.hidden_size}-1 twin networks, "
          f"median of {args.repeats}:")
    for threads in args.threads:
        torch.set_num_threads(threads)
        separate, batched = [], []
        for _ in range(args.repeats):
            separate.append(time_per_step(separate_step))
            batched.append(time_per_step(batched_step))
        s, b = statistics.median(separate), statistics.median(batched)
        print(f"  {threads} thread(s): separate networks {s:,.0f} µs, batched {b:,.0f} µs ({s / b:.2f}×)")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main(tyro.cli(Args))
