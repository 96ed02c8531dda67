"""Where sac.py, td3.py or ddpg.py spends its time after the random warm-up: environment, acting,
storing, sampling, the update (forwards, backward, Adam, target networks), the rest.

Wraps the pieces of the real training loop with timers (no change to the script) and runs it:

    python benchmarks/profile_off_policy.py sac.py --env-id Pendulum-v1

Any argument of the script can follow its name. Timing starts at the first gradient step (the
warm-up steps take no update and would dilute the figures); the wrappers add about a microsecond
per call. Two options go before the script's name:

    python benchmarks/profile_off_policy.py --ops sac.py --env-id Pendulum-v1 --total-timesteps 8000
    python benchmarks/profile_off_policy.py --compile sac.py --env-id Pendulum-v1 --total-timesteps 8000

--ops adds torch.profiler's table of the learning phase's operators (time per call and calls per
update: the matrix products against everything else); --compile runs the networks' forwards through
torch.compile (their backward too, through AOTAutograd), an A/B of compiling against the script as it is.
"""

import sys
import time
from collections import defaultdict

import gymnasium as gym
import torch
import tyro

from profiling import load


def main() -> None:
    options = []
    while len(sys.argv) > 1 and sys.argv[1] in ("--ops", "--compile"):
        options.append(sys.argv.pop(1))
    if len(sys.argv) < 2 or sys.argv[1] not in ("sac.py", "td3.py", "ddpg.py"):
        raise SystemExit("usage: python benchmarks/profile_off_policy.py [--ops] [--compile] {sac.py,td3.py,ddpg.py} [script args]")
    module = load(sys.argv[1])
    sys.modules[module.__name__] = module  # torch.compile looks the networks' module up by name
    args = tyro.cli(module.Args, args=sys.argv[2:])
    totals = defaultdict(float)
    learning = {"start": None, "steps": 0, "updates": 0}  # one replay sample per update

    def timed(name, function):
        def wrapper(*a, **k):
            if learning["start"] is None:
                return function(*a, **k)
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                totals[name() if callable(name) else name] += time.perf_counter() - start

        return wrapper

    operator_profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if "--ops" in options else None

    def first_sample_starts_the_clock(sample):
        def wrapper(*a, **k):
            if learning["start"] is None:
                learning["start"] = time.perf_counter()
                if operator_profile is not None:
                    operator_profile.start()
            learning["updates"] += 1
            return sample(*a, **k)

        return wrapper

    vector_wrapper = gym.wrappers.vector.RecordEpisodeStatistics
    real_env_step = vector_wrapper.step

    def counted_env_step(self, actions):
        if learning["start"] is not None:
            learning["steps"] += len(actions)
        return real_env_step(self, actions)

    vector_wrapper.step = timed("environment step", counted_env_step)
    module.ReplayBuffer.add = timed("store transitions (buffer add)", module.ReplayBuffer.add)
    module.ReplayBuffer.sample = timed("sample a batch", first_sample_starts_the_clock(module.ReplayBuffer.sample))
    acting = lambda: "acting (actor forward, noise)" if torch.is_inference_mode_enabled() else "update: forwards"
    critic_class = module.SoftQNetwork if hasattr(module, "SoftQNetwork") else module.QNetwork
    if "--compile" in options:  # before the timers, so that they time the compiled forwards
        module.Actor.forward = torch.compile(module.Actor.forward)
        critic_class.forward = torch.compile(critic_class.forward)
    module.Actor.forward = timed(acting, module.Actor.forward)
    critic_class.forward = timed("update: forwards", critic_class.forward)
    torch.Tensor.backward = timed("update: backward", torch.Tensor.backward)
    torch.optim.Adam.step = timed("update: Adam steps", torch.optim.Adam.step)
    module.soft_update = timed("update: target networks", module.soft_update)
    module.evaluate = lambda *a, **k: [0.0]  # profile training only

    result = module.train(args)
    wall = time.perf_counter() - learning["start"]
    if operator_profile is not None:
        operator_profile.stop()
    # the end of train() (summary, files) is outside the loop: subtract nothing, it is milliseconds
    steps = learning["steps"]
    print(f"\n{sys.argv[1]}: {steps:,} learning-phase steps in {wall:.1f} s = {steps / wall:,.0f} SPS "
          f"({1e6 * wall / steps:,.0f} µs per environment step; whole run {result['sps']:,.0f} SPS)")
    print(f"{'part':<36}{'seconds':>9}{'share':>8}{'µs/step':>9}")
    rest = ("the rest (loss arithmetic, loop, logging)", wall - sum(totals.values()))
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]) + [rest]:
        print(f"{name:<36}{seconds:>9.2f}{seconds / wall:>8.1%}{1e6 * seconds / steps:>9.0f}")
    if operator_profile is not None:  # self time: each operator's own, not that of the operators it calls
        events = sorted(operator_profile.key_averages(), key=lambda event: -event.self_cpu_time_total)
        profiled = sum(event.self_cpu_time_total for event in events)
        print(f"\n{'operator (learning phase, self time)':<44}{'share':>8}{'µs/call':>9}{'calls/update':>14}")
        for event in events[:15]:
            print(f"{event.key[:43]:<44}{event.self_cpu_time_total / profiled:>8.1%}"
                  f"{event.self_cpu_time_total / event.count:>9.1f}{event.count / learning['updates']:>14.1f}")


if __name__ == "__main__":
    main()
