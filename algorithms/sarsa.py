"""Tabular SARSA (Rummery & Niranjan 1994; Sutton & Barto 2018, Section 6.4, Eq. 6.7).

An on-policy TD control method: act epsilon-greedily, and after every step move Q(S, A) toward
R + gamma * Q(S', A'), where A' is the epsilon-greedy action chosen in S' and then actually taken.
So Q estimates the exploring policy's values: on the cliff walk SARSA takes the safer path away from
the edge and earns more per episode while exploring than Q-learning (Example 6.6). Paper: Rummery &
Niranjan 1994, CUED/F-INFENG/TR 166; book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Discrete observations and actions. Defaults are Example 6.6: CliffWalking-v1, constant
epsilon 0.1, alpha 0.5, gamma 1, about 500 episodes. Only a real termination drops the bootstrap; a
time-limit truncation bootstraps from Q(S', A') with A' drawn from the policy at the true final state
S' (that A' is never taken: the next episode draws a fresh first action).

    python algorithms/sarsa.py                                        # Example 6.6: the cliff walk
    python algorithms/sarsa.py --save-model
    python algorithms/sarsa.py --env-kwargs '{"is_slippery": true}'  # a slippery cliff
    python algorithms/sarsa.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/sarsa.py --model-path runs/.../sarsa.npz --total-timesteps 0 --capture-video
The last line evaluates a saved table without training (and records the evaluation episodes).
"""

import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
FALLBACK_TIME_LIMIT = 500  # for envs registered without a time limit (CliffWalking-v1)
PROGRESS_SECONDS = 5.0  # at most one console progress line this often


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of numpy's generator and of the environment"""
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
    """save the Q-table (and the arguments) to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load a saved Q-table (.npz) before training; with --total-timesteps 0 this only evaluates it"""
    env_id: str = "CliffWalking-v1"
    """the Gymnasium environment id (Discrete observations and actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"is_slippery": true}'"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 13_000
    """environment steps of training (the default gives about 500 cliff-walk episodes, measured)"""
    learning_rate: float = 0.5
    """the step size alpha of Eq. 6.7"""
    gamma: float = 1.0
    """the discount factor"""
    start_e: float = 0.1
    """epsilon at the start of training (Example 6.6 keeps it at 0.1 throughout)"""
    end_e: float = 0.1
    """epsilon at the end of the schedule"""
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon falls linearly from start_e to end_e"""
    eval_episodes: int = 10
    """greedy evaluation episodes at the end"""


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
    # constructor has no such parameter still trains
    render = {"render_mode": render_mode} if render_mode else {}
    try:
        env = gym.make(args.env_id, **json.loads(args.env_kwargs), **time_limit, **render)
    except gym.error.UnregisteredEnv as error:  # no such id, namespace or version; Gymnasium suggests one
        fail(f"unknown --env-id {args.env_id}: {error}")
    except Exception as error:  # the env's module or constructor raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {args.env_id} with --env-kwargs {args.env_kwargs}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")
    # an env registered without a time limit (CliffWalking-v1) gets one: an episode must end
    return env if env.spec.max_episode_steps is not None else gym.wrappers.TimeLimit(env, FALLBACK_TIME_LIMIT)


# ---------------------------------------------------------------------------------------- Math
def linear_schedule(start_e: float, end_e: float, duration: int, t: int) -> float:
    """Epsilon falls linearly from start_e to end_e over `duration` steps, then stays."""
    return max(end_e, start_e + (end_e - start_e) * t / max(duration, 1))


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Random action with probability epsilon; otherwise greedy, breaking ties at random
    (with a zero-initialised table, argmax alone would always pick action 0)."""
    if rng.random() < epsilon:
        return int(rng.integers(len(q_values)))
    return int(rng.choice(np.flatnonzero(q_values == q_values.max())))


def td_target(reward: float, next_q_value: float, terminated: bool, gamma: float) -> float:
    """R + gamma * Q(S', A') for the action A' that will be taken next. Only a real termination
    drops the bootstrap: a truncated episode's final state still has a future, so its value is kept."""
    return reward + gamma * (1.0 - terminated) * float(next_q_value)


def sarsa_update(q_table, obs, action, reward, next_obs, next_action, terminated, alpha, gamma) -> float:
    """Eq. 6.7: Q(S,A) <- Q(S,A) + alpha [R + gamma Q(S',A') - Q(S,A)]; returns the TD error."""
    td_error = td_target(reward, q_table[next_obs, next_action], terminated, gamma) - q_table[obs, action]
    q_table[obs, action] += alpha * td_error
    return td_error


def evaluate(q_table: np.ndarray, args: Args, run_dir: str) -> list:
    """Greedy episodes in a fresh env seeded apart from training; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(q_table[obs])))
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
    if not 0.0 <= args.end_e <= args.start_e <= 1.0:  # epsilon falls (linear_schedule holds it at end_e otherwise)
        fail(f"--start-e and --end-e must satisfy 0 <= end-e <= start-e <= 1; got {args.start_e}, {args.end_e}")
    if not 0.0 <= args.exploration_fraction < np.inf:  # the share of the budget over which epsilon falls
        fail(f"--exploration-fraction must be >= 0 and finite; got {args.exploration_fraction}")
    if args.total_timesteps < 0:
        fail(f"--total-timesteps must be >= 0 (0 only evaluates); got {args.total_timesteps}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1; got {args.eval_episodes}")
    if not 0.0 < args.learning_rate <= 1.0 or not 0.0 <= args.gamma <= 1.0:
        fail(f"--learning-rate must be in (0, 1] and --gamma in [0, 1]; got {args.learning_rate}, {args.gamma}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"is_slippery\": true}}'; got {args.env_kwargs!r}")


def load_table(args: Args, shape: tuple) -> np.ndarray:
    """The Q-table saved by --save-model (an .npz holding it and the arguments it was trained with)."""
    try:
        with np.load(args.model_path) as saved:
            q_table, saved_args = saved["q_table"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a Q-table saved by sarsa.py (.npz): {error}")
    if q_table.shape != shape:
        fail(f"--model-path holds a table of shape {q_table.shape}; {args.env_id} needs {shape}")
    # Another env id or other env kwargs with the same spaces are allowed (a robustness check is a reason
    # to want it) but said aloud, since the returns are then not those of the env the table learned in.
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was trained in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return q_table


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(env.action_space, gym.spaces.Discrete):
        fail(f"sarsa.py needs Discrete observation and action spaces; {args.env_id} has "
             f"{env.observation_space} observations and {env.action_space} actions. Try reinforce.py.")

    q_table = np.zeros((env.observation_space.n, env.action_space.n))  # (n_states, n_actions)
    if args.model_path is not None:
        q_table = load_table(args, q_table.shape)

    # "package.module:Env-v0" and "Namespace/Env-v0" make one directory name, not a path
    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    figure_log = FigureLog(args, run_name, run_dir)
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    episodes_csv = csv.writer(episodes_file)
    episodes_csv.writerow(["global_step", "episode_return", "episode_length", "wall_time"])

    rng = np.random.default_rng(args.seed)
    obs, _ = env.reset(seed=args.seed)
    episodic_returns, episode_return, episode_length = [], 0.0, 0
    exploration_steps = int(args.exploration_fraction * args.total_timesteps)
    action = epsilon_greedy(q_table[obs], args.start_e, rng)  # A: chosen before the first step
    start_time = last_print = time.time()
    global_step = 0
    try:
        for global_step in range(1, args.total_timesteps + 1):
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # next_obs is the true final state here: a single env does not reset by itself.
            # A' comes from the behaviour policy and, unless the episode ends, is the action taken
            # next: the on-policy point. After a truncation it only serves the bootstrap.
            next_action = epsilon_greedy(q_table[next_obs], epsilon, rng)
            td_error = sarsa_update(q_table, obs, action, float(reward), next_obs, next_action, terminated,
                                    args.learning_rate, args.gamma)
            if not np.isfinite(td_error):
                fail(f"the TD error became {td_error} at step {global_step}")
            obs, action = next_obs, next_action
            episode_return += float(reward)
            episode_length += 1
            if terminated or truncated:
                wall_time = time.time() - start_time
                episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                episodic_returns.append(episode_return)
                if figure_log.on:
                    figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                                    "charts/epsilon": epsilon, "charts/SPS": global_step / max(wall_time, 1e-9)}, step=global_step)
                obs, _ = env.reset()
                action = epsilon_greedy(q_table[obs], epsilon, rng)
                episode_return, episode_length = 0.0, 0
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode: episodes can be 6 steps long
                    sps = global_step / wall_time
                    eta = int((args.total_timesteps - global_step) / sps)
                    print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                          f"{np.mean(episodic_returns[-10:]):.2f} | epsilon {epsilon:.3f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    env.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.npz")
        np.savez(model_file, q_table=q_table, args=json.dumps(vars(args)))  # the args as text: no pickle to load
        print(f"saved the Q-table to {model_file}")
    eval_returns = evaluate(q_table, args, run_dir)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/return_mean": summary["eval_return_mean"], "eval/return_std": summary["eval_return_std"]},
                   step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS) | greedy evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time, "q_table": q_table}


if __name__ == "__main__":
    train(tyro.cli(Args))
