"""Where an on-policy run (ppo.py, ppo_continuous.py, a2c.py) spends its time: environment, acting,
normalisation, advantages, the update (forwards, backward, gradient clipping, Adam), the rest.

Wraps the pieces of the real training loop with timers (no change to the script) and runs it:

    python benchmarks/profile_on_policy.py ppo_continuous.py --total-timesteps 102400
    python benchmarks/profile_on_policy.py ppo.py --env-id CartPole-v1 --total-timesteps 100000

Any argument of the script can follow its name. The wrappers add about a microsecond per call; the
printed total SPS is that of the timed run (a whole run's figures, evaluation excluded).
"""

import sys
from collections import defaultdict

import gymnasium as gym
import torch
import tyro

from profiling import load, timed


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("ppo.py", "ppo_continuous.py", "a2c.py"):
        raise SystemExit("usage: python benchmarks/profile_on_policy.py {ppo.py,ppo_continuous.py,a2c.py} [its arguments]")
    ppo = load(sys.argv[1])
    args = tyro.cli(ppo.Args, args=sys.argv[2:])
    totals = defaultdict(float)
    # The env step includes the vector env, its wrappers and the autoreset.
    wrapper_class = gym.wrappers.vector.RecordEpisodeStatistics
    wrapper_class.step = timed(totals, "environment step", wrapper_class.step)
    acting = "acting (policy and value forwards, sample)"
    if hasattr(ppo, "RolloutPolicy"):  # ppo_continuous.py acts in numpy; its torch Agent runs in the update only
        ppo.RolloutPolicy.act = timed(totals, acting, ppo.RolloutPolicy.act)
        ppo.RolloutPolicy.value = timed(totals, acting, ppo.RolloutPolicy.value)
        ppo.Agent.evaluate_actions = timed(totals, "update: forwards", ppo.Agent.evaluate_actions)
    else:  # acting runs under inference mode; the same methods called with gradients are the update's forwards
        kind = lambda: acting if torch.is_inference_mode_enabled() else "update: forwards"
        ppo.Agent.get_action_and_value = timed(totals, kind, ppo.Agent.get_action_and_value)
        ppo.Agent.get_value = timed(totals, kind, ppo.Agent.get_value)
    if hasattr(ppo, "RunningMeanStd"):  # ppo.py has no normalisers
        ppo.RunningMeanStd.update = timed(totals, "normalisation (obs update, reward scale)", ppo.RunningMeanStd.update)
        ppo.RunningMeanStd.normalize = timed(totals, "normalisation (obs update, reward scale)", ppo.RunningMeanStd.normalize)
    ppo.compute_gae = timed(totals, "advantages (compute_gae)", ppo.compute_gae)
    torch.Tensor.backward = timed(totals, "update: backward", torch.Tensor.backward)
    torch.nn.utils.clip_grad_norm_ = timed(totals, "update: clip grad norm", torch.nn.utils.clip_grad_norm_)
    torch.optim.Adam.step = timed(totals, "update: Adam step", torch.optim.Adam.step)
    ppo.evaluate = lambda *a, **k: [0.0]  # profile training only

    result = ppo.train(args)
    wall = result["wall_time"]
    steps = round(result["sps"] * wall)  # the steps taken: whole rollouts
    print(f"\n{steps:,} steps in {wall:.1f} s = {steps / wall:,.0f} SPS ({1e6 * wall / steps:.0f} µs per "
          f"environment step)")
    print(f"{'part':<44}{'seconds':>9}{'share':>8}{'µs/step':>9}")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]) + [("the rest (loop, storage, conversions, "
                                                                            "loss arithmetic)", wall - sum(totals.values()))]:
        print(f"{name:<44}{seconds:>9.2f}{seconds / wall:>8.1%}{1e6 * seconds / steps:>9.1f}")


if __name__ == "__main__":
    main()
