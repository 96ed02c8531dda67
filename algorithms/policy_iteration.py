"""Policy iteration (Howard 1960; Sutton & Barto 2018, Section 4.3; policy evaluation, Section 4.1, Eq. 4.5).

Exact dynamic programming on a known model: evaluate the policy by sweeping Eq. 4.5,
v_{k+1}(s) = sum_{s',r} p(s',r|s,pi(s)) [r + gamma v_k(s')], until the largest change is below theta
(each evaluation starts from the last one's values); make the policy greedy in v_pi (Eq. 4.9); repeat
until no action changes. No env step is taken to learn: the env supplies its model
`env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]` and runs the evaluation episodes.
Book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Discrete observations and actions plus a transition model P (FrozenLake-v1, Taxi-v4, CliffWalking-v1).
A transition flagged terminated contributes only its reward, so V of a terminal state is never read:
FrozenLake's holes and goal loop to themselves with such a zero-reward transition and get V = 0 (the book's
convention); CliffWalking's goal and Taxi's delivered states keep the value of moves P lists but the env
never takes. V is the discounted infinite-horizon value; evaluation episodes still end at the time limit.

    python algorithms/policy_iteration.py                                 # slippery FrozenLake 4x4
    python algorithms/policy_iteration.py --env-id Taxi-v4 --save-model
    python algorithms/policy_iteration.py --env-kwargs '{"map_name": "8x8", "is_slippery": false}'
    python algorithms/policy_iteration.py --env-id my_package.my_envs:MyEnv-v0  # imports the module that registers it
    python algorithms/policy_iteration.py --model-path runs/.../policy_iteration.npz --max-iterations 0 --capture-video
The last line evaluates a saved policy without planning (and records the evaluation episodes).
"""

import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple, Optional

import gymnasium as gym
import numpy as np
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use the seeds q_learning.py evaluates on
FALLBACK_TIME_LIMIT = 500  # for envs registered without a time limit (CliffWalking-v1)
PROGRESS_SECONDS = 5.0  # at most one console progress line this often


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of the evaluation episodes (planning itself is deterministic)"""
    track: bool = False
    """log to Weights & Biases"""
    tensorboard: bool = False
    """write the same figures as TensorBoard event files into the run directory (needs torch)"""
    wandb_project_name: str = "lucidrl"
    """the W&B project"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    capture_video: bool = False
    """record the evaluation episodes to runs/{run_name}/videos"""
    save_model: bool = False
    """save V and the policy (and the arguments) to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load a saved model (.npz) and start from its policy; with --max-iterations 0 this only evaluates it"""
    env_id: str = "FrozenLake-v1"
    """the Gymnasium id, "package.module:Env-v0" too (Discrete observations and actions, and a model env.unwrapped.P)"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (planning, evaluation and video envs), e.g. '{"map_name": "8x8"}'"""
    max_episode_steps: Optional[int] = None
    """evaluation episode time limit; None keeps the registered one (or 500 when the env has none)"""
    max_iterations: int = 100
    """the most policy improvements (0 plans nothing: evaluates the loaded policy only)"""
    theta: float = 1e-10
    """a policy evaluation stops when the largest change of V in a sweep is below theta"""
    max_evaluation_sweeps: int = 10_000
    """the most sweeps of Eq. 4.5 per policy evaluation (fewer makes it modified policy iteration)"""
    gamma: float = 0.99
    """the discount factor"""
    eval_episodes: int = 10
    """evaluation episodes of the final policy at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One env from any id gym.make takes, "package.module:Env-v0" included (gym.make imports the module,
    which registers the env), with --env-kwargs; one line and exit 2 when the id is unknown or making
    the env raises."""
    if ":" in args.env_id and os.getcwd() not in sys.path:
        # a script's import path starts at its own folder: let "my_envs:Env-v0" find the package my_envs
        # in the working directory, as `python -m` would
        sys.path.append(os.getcwd())
    time_limit = {"max_episode_steps": args.max_episode_steps} if args.max_episode_steps else {}
    # render_mode is handed to the env's constructor: pass it only when asked for, so an env whose
    # constructor has no such parameter still plans
    render = {"render_mode": render_mode} if render_mode else {}
    try:
        env = gym.make(args.env_id, **json.loads(args.env_kwargs), **time_limit, **render)
    except gym.error.UnregisteredEnv as error:  # no such id, namespace or version; Gymnasium suggests one
        fail(f"unknown --env-id {args.env_id}: {error}")
    except Exception as error:  # the env's module or constructor raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {args.env_id} with --env-kwargs {args.env_kwargs}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")
    # an env registered without a time limit (CliffWalking-v1) gets one: an evaluation episode must end
    return env if env.spec.max_episode_steps is not None else gym.wrappers.TimeLimit(env, FALLBACK_TIME_LIMIT)


# ---------------------------------------------------------------------------------------- Model
class Model(NamedTuple):
    """env.unwrapped.P as arrays, each (n_states, n_actions, k): k is the most outcomes of any (s, a),
    and the others are padded with outcomes of probability 0."""
    probs: np.ndarray
    next_states: np.ndarray
    rewards: np.ndarray
    not_done: np.ndarray  # 0.0 where the transition terminates: it contributes its reward only


def tabulate_model(transitions: dict, n_states: int, n_actions: int) -> Model:
    k = max(len(transitions[s][a]) for s, a in np.ndindex(n_states, n_actions))
    table = np.zeros((4, n_states, n_actions, k))  # prob, next_state, reward, terminated
    for s, a in np.ndindex(n_states, n_actions):
        for i, outcome in enumerate(transitions[s][a]):
            table[:, s, a, i] = outcome
    return Model(table[0], table[1].astype(np.int64), table[2], 1.0 - table[3])


def load_model(args: Args, n_states: int, n_actions: int) -> tuple:
    """V and the policy (action indices) saved by --save-model of value_iteration.py or policy_iteration.py
    (an .npz holding them and the arguments they were planned with)."""
    try:
        with np.load(args.model_path) as saved:
            values, policy, saved_args = saved["values"], saved["policy"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of these scripts
        fail(f"--model-path {args.model_path} is not a model saved by value_iteration.py or policy_iteration.py "
             f"(.npz): {error}")
    if values.shape != (n_states,) or policy.shape != (n_states,) or values.dtype.kind != "f" \
            or not np.isfinite(values).all() or not np.isin(policy, np.arange(n_actions)).all():
        fail(f"--model-path {args.model_path} holds no model for this env: that is V and a policy, shape ({n_states},) "
             f"each, with actions in [0, {n_actions}); it has shapes {values.shape} and {policy.shape}")
    # Another env id or other env kwargs with the same spaces are allowed (a robustness check is a reason
    # to want it) but said aloud, since the returns are then not those of the env the model was planned in.
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was planned in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return values, policy.astype(np.int64)


# ---------------------------------------------------------------------------------------- Math
def expected_update(model: Model, values: np.ndarray, gamma: float) -> np.ndarray:
    """sum_{s',r} p(s',r|s,a) [r + gamma v(s')] for every (s, a) (Eq. 4.6), shape (n_states, n_actions).
    A terminated transition never reads v(s'): it ends the episode, so nothing follows its reward."""
    bootstrap = model.not_done * values[model.next_states]
    return (model.probs * (model.rewards + gamma * bootstrap)).sum(axis=-1)


def evaluate_policy(model: Model, policy: np.ndarray, values: np.ndarray, gamma: float, theta: float,
                    max_sweeps: int) -> tuple:
    """Iterative policy evaluation (Section 4.1): synchronous sweeps of Eq. 4.5 from `values` until the
    largest change is below theta or max_sweeps ran. Returns the values and the number of sweeps."""
    states = np.arange(len(policy))
    policy_model = Model(*(array[states, policy] for array in model))  # each (n_states, k): pi's outcomes
    for sweep in range(1, max_sweeps + 1):
        new_values = expected_update(policy_model, values, gamma)
        delta, values = np.abs(new_values - values).max(), new_values
        if delta < theta:
            break
    return values, sweep


def improve_policy(q_values: np.ndarray, policy: np.ndarray, tolerance: float) -> np.ndarray:
    """Policy improvement (Eq. 4.9): greedy in q_pi, but an action stays unless another beats it by more
    than tolerance, so that equally good policies cannot take turns forever (Exercise 4.4)."""
    best, states = q_values.argmax(axis=1), np.arange(len(policy))
    return np.where(q_values[states, best] > q_values[states, policy] + tolerance, best, policy)


def evaluate(policy: np.ndarray, args: Args, run_dir: str) -> list:
    """Episodes of the policy in a fresh env seeded exactly like q_learning.py's; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(policy[obs]))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


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
def check_args(args: Args) -> None:
    """Arguments that cannot work: one line naming the argument and its allowed range, exit 2."""
    for name, value in vars(args).items():  # NaN passes a check such as "x <= 0": every comparison with NaN is False
        if isinstance(value, float) and np.isnan(value):
            fail(f"--{name.replace('_', '-')} must be a number; got nan")
    if not 0 <= args.seed <= 2**32 - 1:  # np.random.seed's range, one range of seeds for every script
        fail(f"--seed must be in [0, 2**32 - 1]; got {args.seed}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:  # 0 read as "left out"; -1 cut every step
        fail(f"--max-episode-steps must be >= 1 (or left out: the registered limit); got {args.max_episode_steps}")
    if args.max_iterations < 0:
        fail(f"--max-iterations must be >= 0 (0 only evaluates); got {args.max_iterations}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1; got {args.eval_episodes}")
    if args.max_evaluation_sweeps < 1:
        fail(f"--max-evaluation-sweeps must be >= 1; got {args.max_evaluation_sweeps}")
    if not args.theta > 0.0 or not 0.0 <= args.gamma < 1.0:  # gamma < 1 also keeps every value finite
        fail(f"--theta must be > 0 and --gamma in [0, 1) (sweeps converge with discounting); "
             f"got {args.theta}, {args.gamma}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"is_slippery\": false}}'; got {args.env_kwargs!r}")


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    spaces = (env.observation_space, env.action_space)
    if not all(isinstance(space, gym.spaces.Discrete) for space in spaces) or not hasattr(env.unwrapped, "P"):
        fail(f"policy_iteration.py needs Discrete observations and actions and a model env.unwrapped.P; "
             f"{args.env_id} has {spaces[0]} observations, {spaces[1]} actions"
             f"{'' if hasattr(env.unwrapped, 'P') else ', no P'}. Try q_learning.py (or dqn.py, sac.py).")
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    model = tabulate_model(env.unwrapped.P, n_states, n_actions)
    env.close()
    values, policy = np.zeros(n_states), np.zeros(n_states, dtype=np.int64)  # (n_states,) each
    if args.model_path is not None:
        values, policy = load_model(args, n_states, n_actions)  # its V starts the first evaluation
    # Evaluation stopped by theta leaves |V - v_pi| <= gamma theta / (1 - gamma): closer q-values are ties.
    tie_tolerance = 2.0 * args.gamma * args.theta / (1.0 - args.gamma)

    # "package.module:Env-v0" and "Namespace/Env-v0" make one directory name, not a path
    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    figure_log = FigureLog(args, run_name, run_dir)
    iterations_file = open(os.path.join(run_dir, "iterations.csv"), "w", newline="")
    iterations_csv = csv.writer(iterations_file)
    iterations_csv.writerow(["iteration", "policy_changes", "evaluation_sweeps", "wall_time"])

    start_time = last_print = time.time()
    iteration, policy_changes = 0, -1
    try:
        while iteration < args.max_iterations:  # iteration counts completed improvements, also after a Ctrl-C
            values, sweeps = evaluate_policy(model, policy, values, args.gamma, args.theta,
                                             args.max_evaluation_sweeps)
            new_policy = improve_policy(expected_update(model, values, args.gamma), policy, tie_tolerance)
            policy_changes, policy, iteration = int((new_policy != policy).sum()), new_policy, iteration + 1
            iterations_csv.writerow([iteration, policy_changes, sweeps, f"{time.time() - start_time:.4f}"])
            if figure_log.on:
                figure_log.log({"charts/policy_changes": policy_changes, "charts/evaluation_sweeps": sweeps},
                               step=iteration)
            if policy_changes == 0:
                break  # policy-stable: v_pi solves the Bellman optimality equation, so pi is optimal
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                iterations_file.flush()
                print(f"iteration {iteration:,}/{args.max_iterations:,} | {policy_changes} actions changed "
                      f"after {sweeps:,} evaluation sweeps")
    except KeyboardInterrupt:
        print(f"interrupted after {iteration:,} iterations: evaluating and saving the last improved policy")
    iterations_file.close()
    wall_time = time.time() - start_time

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.npz")
        np.savez(model_file, values=values, policy=policy, args=json.dumps(vars(args)))  # the args as text: no pickle
        print(f"saved V and the policy to {model_file}")
    eval_returns = evaluate(policy, args, run_dir)
    summary = {"args": vars(args), "global_step": 0, "iterations": iteration, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": 0.0, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/return_mean": summary["eval_return_mean"], "eval/return_std": summary["eval_return_std"]},
                   step=iteration)
    figure_log.close()
    converged = policy_changes == 0
    status = "policy-stable" if converged else "evaluated only" if iteration == 0 else "not stable"
    print(f"{run_name}: {iteration:,} iterations in {wall_time:.2f}s ({status}) | evaluation of the policy "
          f"{summary['eval_return_mean']:.3f} ± {summary['eval_return_std']:.3f} over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": [], "eval_returns": eval_returns, "sps": 0.0,
            "wall_time": wall_time, "iterations": iteration, "converged": converged, "values": values, "policy": policy}


if __name__ == "__main__":
    train(tyro.cli(Args))
