"""Multi-armed bandits on the 10-armed testbed (Sutton & Barto 2018, Chapter 2, Figures 2.2-2.5).

Each run is a bandit problem with true values q*(a) ~ N(0, 1); pulling arm a pays N(q*(a), 1)
(Section 2.3). Compared: epsilon-greedy with sample averages (Fig. 2.2, Eq. 2.3), optimistic initial
values with a constant step size (Fig. 2.3, Eq. 2.5), UCB (Fig. 2.4, Eq. 2.10) and the gradient bandit
with and without the average-reward baseline (Fig. 2.5, Eqs. 2.11-2.12, on a testbed with q*(a) ~ N(+4, 1)).
Book: http://incompleteideas.net/book/the-book-2nd.html. All runs advance together as (num_runs,
num_arms) numpy arrays, and every method meets the same num_runs problems with the same random stream
(common random numbers make the comparisons sharper). No Gymnasium env, no model: a run writes
curves.csv (per step and method: the average reward and the % of runs that chose an optimal arm) and
summary.json, whose `sps` counts arm pulls per second (methods x runs x steps / seconds).

    python algorithms/bandits.py                     # Figures 2.2-2.5: 2000 runs x 1000 steps, seconds
    python algorithms/bandits.py --plot              # ... and figure_2_2.png ... figure_2_5.png in the run dir
    python algorithms/bandits.py --num-steps 5000 --epsilons 0 0.01 0.1 0.2 --track
"""

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tyro

LAST_STEPS = 100  # the summary also averages the last this many steps (less noisy than the final step)


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of numpy's generator (the problems, then every method's choices and rewards)"""
    track: bool = False
    """log to Weights & Biases"""
    tensorboard: bool = False
    """write the same figures as TensorBoard event files into the run directory (needs torch)"""
    wandb_project_name: str = "lucidrl"
    """the W&B project"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    num_runs: int = 2000
    """independent bandit problems; the curves are averages over them"""
    num_steps: int = 1000
    """steps (arm pulls) per run"""
    num_arms: int = 10
    """arms per problem"""
    epsilons: tuple[float, ...] = (0.0, 0.01, 0.1)
    """Figure 2.2: one epsilon-greedy method with sample-average estimates per epsilon"""
    epsilon: float = 0.1
    """Figures 2.3 and 2.4: epsilon of the realistic method (Q1 = 0) and of the sample-average rival of UCB"""
    initial_value: float = 5.0
    """Figure 2.3: the optimistic initial estimate Q1 of the greedy method"""
    step_size: float = 0.1
    """Figure 2.3: the constant step size alpha of the optimistic and the realistic method (Eq. 2.5)"""
    ucb_c: float = 2.0
    """Figure 2.4: the degree of exploration c of UCB (Eq. 2.10)"""
    gradient_step_sizes: tuple[float, ...] = (0.1, 0.4)
    """Figure 2.5: step sizes alpha of the gradient bandit (Eq. 2.12), each with and without the baseline"""
    gradient_true_mean: float = 4.0
    """Figure 2.5: the mean of the true values q*(a) on the gradient bandit's testbed"""
    plot: bool = False
    """write the Figures 2.2-2.5 PNGs into the run directory"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def make_methods(args: Args) -> tuple:
    """The methods by name (a dict of settings each) and the method names each figure compares."""
    def value_method(epsilon, initial_value=0.0, step_size=None):  # step_size None: sample averages
        return {"kind": "value", "epsilon": epsilon, "initial_value": initial_value, "step_size": step_size}

    methods = {f"eps_{eps:g}": value_method(eps) for eps in (*args.epsilons, args.epsilon)}
    methods[f"optimistic_q{args.initial_value:g}"] = value_method(0.0, args.initial_value, args.step_size)
    methods["realistic_q0"] = value_method(args.epsilon, 0.0, args.step_size)
    methods[f"ucb_c{args.ucb_c:g}"] = {"kind": "ucb", "c": args.ucb_c}
    for alpha in args.gradient_step_sizes:
        methods[f"gradient_a{alpha:g}_baseline"] = {"kind": "gradient", "step_size": alpha, "baseline": True}
        methods[f"gradient_a{alpha:g}_no_baseline"] = {"kind": "gradient", "step_size": alpha, "baseline": False}
    figures = {"figure_2_2": [f"eps_{eps:g}" for eps in args.epsilons],
               "figure_2_3": [f"optimistic_q{args.initial_value:g}", "realistic_q0"],
               "figure_2_4": [f"ucb_c{args.ucb_c:g}", f"eps_{args.epsilon:g}"],
               "figure_2_5": [name for name in methods if name.startswith("gradient_")]}
    return methods, {figure: list(dict.fromkeys(names)) for figure, names in figures.items()}


# ---------------------------------------------------------------------------------------- Math
def random_argmax(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax with ties broken uniformly at random: each maximum draws a uniform number, the
    rest get -1, and the largest number wins (plain argmax would always favour the first arm)."""
    is_max = values == values.max(axis=1, keepdims=True)
    return np.where(is_max, rng.random(values.shape), -1.0).argmax(axis=1)


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Per run: a uniformly random arm with probability epsilon, otherwise a greedy one (Section 2.2)."""
    num_runs, num_arms = q_values.shape
    explore = rng.random(num_runs) < epsilon
    return np.where(explore, rng.integers(num_arms, size=num_runs), random_argmax(q_values, rng))


def update_action_values(q_values, counts, actions, rewards, step_size: Optional[float]) -> None:
    """Q(A) <- Q(A) + step (R - Q(A)) for each run's pulled arm, in place. step = 1 / N(A) keeps the
    sample average (Eq. 2.3); a constant step = alpha weights recent rewards more (Eqs. 2.5-2.6)."""
    runs = np.arange(len(actions))
    counts[runs, actions] += 1
    step = 1.0 / counts[runs, actions] if step_size is None else step_size
    q_values[runs, actions] += step * (rewards - q_values[runs, actions])


def ucb_scores(q_values: np.ndarray, counts: np.ndarray, t: int, c: float) -> np.ndarray:
    """Eq. 2.10: Q_t(a) + c sqrt(ln t / N_t(a)) at step t = 1, 2, ...; an arm never tried
    (N_t(a) = 0) is a maximising action, so it scores +inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bonus = c * np.sqrt(np.log(t) / counts)
    return np.where(counts > 0, q_values + bonus, np.inf)


def softmax(preferences: np.ndarray) -> np.ndarray:
    """Eq. 2.11: pi(a) = exp(H(a)) / sum_b exp(H(b)) per row (shifting by the max only avoids overflow)."""
    exp = np.exp(preferences - preferences.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def sample_actions(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One arm per row of probs by inverse-CDF sampling (clipped in case rounding leaves the sum under 1)."""
    uniforms = rng.random((len(probs), 1))
    return np.minimum((probs.cumsum(axis=1) <= uniforms).sum(axis=1), probs.shape[1] - 1)


def update_preferences(preferences, probs, actions, rewards, baseline, step_size: float) -> None:
    """Eq. 2.12, in place: H(A) += alpha (R - baseline)(1 - pi(A)) and H(a) -= alpha (R - baseline) pi(a)
    for every other arm a, written as: every arm loses the pi(a) term, then A gains the 1.
    baseline: the average reward of each run, or 0 without the baseline."""
    step = step_size * (rewards - baseline)  # (num_runs,)
    preferences -= step[:, None] * probs
    preferences[np.arange(len(actions)), actions] += step


def run_method(method: dict, q_true: np.ndarray, num_steps: int, rng: np.random.Generator) -> tuple:
    """One method on all problems at once. Returns the average reward and the % of runs that chose an
    optimal arm, each (num_steps,)."""
    num_runs, num_arms = q_true.shape
    runs, optimal_arms = np.arange(num_runs), q_true.argmax(axis=1)
    q_values = np.full((num_runs, num_arms), method.get("initial_value", 0.0))  # (num_runs, num_arms)
    counts, preferences = np.zeros((num_runs, num_arms)), np.zeros((num_runs, num_arms))
    average_reward = np.zeros(num_runs)  # the gradient bandit's baseline
    reward_curve, optimal_curve = np.empty(num_steps), np.empty(num_steps)
    for t in range(1, num_steps + 1):
        if method["kind"] == "gradient":
            probs = softmax(preferences)
            actions = sample_actions(probs, rng)
        elif method["kind"] == "ucb":
            actions = random_argmax(ucb_scores(q_values, counts, t, method["c"]), rng)
        else:
            actions = epsilon_greedy(q_values, method["epsilon"], rng)
        rewards = q_true[runs, actions] + rng.standard_normal(num_runs)  # R_t ~ N(q*(A_t), 1), (num_runs,)
        if method["kind"] == "gradient":
            # The baseline includes R_t, as in the book's experiments (footnote in Section 2.8; the
            # text of Eq. 2.12 averages the rewards before t, with R-bar_1 = R_1).
            average_reward += (rewards - average_reward) / t
            baseline = average_reward if method["baseline"] else 0.0
            update_preferences(preferences, probs, actions, rewards, baseline, method["step_size"])
        else:  # UCB estimates by sample averages too (step_size None)
            update_action_values(q_values, counts, actions, rewards, method.get("step_size"))
        reward_curve[t - 1] = rewards.mean()
        optimal_curve[t - 1] = 100.0 * np.mean(actions == optimal_arms)
    return reward_curve, optimal_curve


def plot_figures(curves: dict, figures: dict, run_dir: str) -> None:
    """One PNG per figure with two panels: average reward and % optimal action against steps."""
    import matplotlib  # imported lazily: only --plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for figure, names in figures.items():
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
        for name in names:
            steps = np.arange(1, len(curves[name][0]) + 1)
            top.plot(steps, curves[name][0], label=name, linewidth=1)
            bottom.plot(steps, curves[name][1], label=name, linewidth=1)
        top.set(ylabel="Average reward", title=figure.replace("figure_", "Sutton & Barto 2018, Figure ").replace("_", "."))
        bottom.set(xlabel="Steps", ylabel="% Optimal action", ylim=(0, 100))
        top.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, f"{figure}.png"), dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------------------------- Logging
class FigureLog:
    """Sends the run's figures to Weights & Biases (--track) and/or TensorBoard (--tensorboard); both
    are imported only when asked for (they are slow to import and optional)."""

    def __init__(self, args: Args, run_name: str, run_dir: str):
        self.wandb = self.writer = None
        if args.track:
            import wandb

            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name,
                       config=vars(args), dir=run_dir)
            self.wandb = wandb
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(run_dir)  # the arguments are in summary.json beside it
        self.on = self.wandb is not None or self.writer is not None  # callers skip building figures otherwise

    def log(self, figures: dict, step: int) -> None:
        if self.wandb is not None:
            self.wandb.log(figures, step=step)
        if self.writer is not None:
            for name, value in figures.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------------- Train
def train(args: Args) -> dict:
    for valid, message in (
            (0 <= args.seed <= 2**32 - 1, f"--seed must be in [0, 2**32 - 1]; got {args.seed}"),  # as every script's
            (args.num_runs >= 1, f"--num-runs must be >= 1; got {args.num_runs}"),
            (args.num_steps >= 1, f"--num-steps must be >= 1; got {args.num_steps}"),
            (args.num_arms >= 2, f"--num-arms must be >= 2 (one arm leaves no choice); got {args.num_arms}"),
            (all(0 <= eps <= 1 for eps in args.epsilons), f"--epsilons must lie in [0, 1]; got {args.epsilons}"),
            (0 <= args.epsilon <= 1, f"--epsilon must lie in [0, 1]; got {args.epsilon}"),
            (np.isfinite(args.initial_value), f"--initial-value must be finite; got {args.initial_value}"),
            (0 < args.step_size <= 1, f"--step-size must lie in (0, 1]; got {args.step_size}"),
            (0 <= args.ucb_c < np.inf, f"--ucb-c must be >= 0 and finite; got {args.ucb_c}"),
            (all(0 < alpha < np.inf for alpha in args.gradient_step_sizes),
             f"--gradient-step-sizes must be > 0 and finite; got {args.gradient_step_sizes}"),
            (np.isfinite(args.gradient_true_mean), f"--gradient-true-mean must be finite; got {args.gradient_true_mean}")):
        if not valid:
            fail(message)
    methods, figures = make_methods(args)
    run_name = f"{args.num_arms}-armed-testbed__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    figure_log = FigureLog(args, run_name, run_dir)

    rng = np.random.default_rng(args.seed)
    q_true = rng.normal(0.0, 1.0, (args.num_runs, args.num_arms))  # the problems, (num_runs, num_arms)
    method_seed = int(rng.integers(2**63))  # every method replays this stream (common random numbers)
    start_time = time.time()
    curves, results = {}, {}
    for name, method in methods.items():
        method_start = time.time()
        shift = args.gradient_true_mean if method["kind"] == "gradient" else 0.0  # Fig. 2.5: q*(a) ~ N(+4, 1)
        reward_curve, optimal_curve = run_method(method, q_true + shift, args.num_steps,
                                                 np.random.default_rng(method_seed))
        curves[name] = (reward_curve, optimal_curve)
        results[name] = {"mean_reward": float(reward_curve.mean()),
                         "mean_reward_last_100": float(reward_curve[-LAST_STEPS:].mean()),
                         "optimal_action_pct_final": float(optimal_curve[-1]),
                         "optimal_action_pct_last_100": float(optimal_curve[-LAST_STEPS:].mean())}
        print(f"{name:>26}: average reward {reward_curve.mean():.3f} | optimal action {optimal_curve[-1]:.1f}% "
              f"at step {args.num_steps:,} | {time.time() - method_start:.1f}s")
    sps = len(methods) * args.num_runs * args.num_steps / max(time.time() - start_time, 1e-9)  # arm pulls/s

    header = ["step"] + [f"{name}_{column}" for name in curves for column in ("reward", "optimal")]
    columns = [np.arange(1, args.num_steps + 1)] + [curve for pair in curves.values() for curve in pair]
    np.savetxt(os.path.join(run_dir, "curves.csv"), np.column_stack(columns), delimiter=",",
               header=",".join(header), comments="", fmt=["%d"] + ["%.4f", "%.2f"] * len(curves))
    if args.plot:
        plot_figures(curves, figures, run_dir)
    if figure_log.on:
        for step in range(args.num_steps):  # after all methods ran: one log per step holds every method
            metrics = {}
            for name, (reward_curve, optimal_curve) in curves.items():
                metrics[f"charts/{name}/average_reward"] = float(reward_curve[step])
                metrics[f"charts/{name}/optimal_action_pct"] = float(optimal_curve[step])
            figure_log.log(metrics, step=step + 1)
    wall_time = time.time() - start_time
    summary = {"args": vars(args), "methods": results, "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    if figure_log.wandb is not None:  # the totals go to W&B's run summary; TensorBoard has no such place
        finals = {f"final/{name}/{key}": value for name, result in results.items() for key, value in result.items()}
        figure_log.wandb.run.summary.update({"charts/SPS": sps, **finals})
    figure_log.close()
    print(f"{run_name}: {len(methods)} methods x {args.num_runs:,} runs x {args.num_steps:,} steps in "
          f"{wall_time:.1f}s ({sps:,.0f} arm pulls per second)")
    return {"run_dir": run_dir, "curves": curves, "methods": results, "figures": figures, "sps": sps,
            "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
