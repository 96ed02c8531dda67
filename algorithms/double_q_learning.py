"""Tabular Double Q-learning (van Hasselt 2010; Sutton & Barto 2018, Section 6.7, Eq. 6.10).

Q-learning's max over noisy estimates is biased upward (maximisation bias). Double Q-learning keeps two
tables: it acts epsilon-greedily on Q1 + Q2 and, on a coin flip, moves Q1(s, a) toward
r + gamma * Q2(s', argmax_a' Q1(s', a')) or Q2 symmetrically: one table picks the action, the other,
independent, values it. Paper (NeurIPS 2010):
https://proceedings.neurips.cc/paper_files/paper/2010/file/091d584fced301b442654dd8c23b3fc9-Paper.pdf;
book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Discrete observations and Discrete actions. The default env is the maximisation-bias MDP of
Example 6.7 (Figure 6.5), defined below. When an env gives `info["action_mask"]` (this one; Taxi-v4 too)
the script only explores, acts and bootstraps over the allowed actions of each state. A time-limit
truncation bootstraps from the final state; only a real termination does not.

    python algorithms/double_q_learning.py                          # Example 6.7, about 300 episodes
    python algorithms/double_q_learning.py --env-id Taxi-v4 --total-timesteps 300000 --start-e 1 --end-e 0.05 --gamma 0.99
    python algorithms/double_q_learning.py --env-id CliffWalking-v1 --save-model
    python algorithms/double_q_learning.py --env-kwargs '{"n_b_actions": 100}'   # B has 100 actions
    python algorithms/double_q_learning.py --env-id my_package.my_envs:MyEnv-v0  # importing my_package.my_envs registers it
    python algorithms/double_q_learning.py --model-path runs/.../double_q_learning.npz --total-timesteps 0 --capture-video
The last line evaluates saved tables without training (and records the evaluation episodes).
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
MAXIMIZATION_BIAS_ID = "LucidRL/MaximizationBias-v0"


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
    """save both Q-tables, shape (2, n_states, n_actions), to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load both Q-tables (.npz) before training; with --total-timesteps 0 this only evaluates them"""
    env_id: str = MAXIMIZATION_BIAS_ID
    """the Gymnasium environment id (Discrete observations and actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"n_b_actions": 100}'"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 330
    """environment steps of training (330 are about 300 episodes of Example 6.7, as in Figure 6.5)"""
    learning_rate: float = 0.1
    """the step size alpha of Eq. 6.10"""
    gamma: float = 1.0
    """the discount factor"""
    start_e: float = 0.1
    """epsilon at the start of training"""
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
class MaximizationBiasEnv(gym.Env):
    """Example 6.7: start in A (0). Action 1 (right) ends the episode with reward 0; action 0 (left) leads
    to B (1) with reward 0. Every one of B's n_b_actions ends the episode (state 2) with a reward drawn
    from Normal(-0.1, 1). Only actions 0 and 1 exist in A: info["action_mask"] says so; another one there
    is an error, as Gymnasium has one action space for every state."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}
    observation_space = gym.spaces.Discrete(3)  # 0 = A, 1 = B, 2 = terminal

    def __init__(self, n_b_actions: int = 10, render_mode: Optional[str] = None):
        if n_b_actions < 2:
            raise ValueError(f"n_b_actions must be >= 2 (A has two actions); got {n_b_actions}")
        self.action_space = gym.spaces.Discrete(n_b_actions)
        self.render_mode, self.state = render_mode, 0

    def _info(self) -> dict:
        mask = np.ones(self.action_space.n, dtype=np.int8)
        mask[2:] = self.state != 0  # in A only left (0) and right (1)
        return {"action_mask": mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self.state, self._info()

    def step(self, action):
        if self.state == 0 and action > 1:
            raise ValueError(f"action {action} is masked out in state A (see info['action_mask'])")
        reward = self.np_random.normal(-0.1, 1.0) if self.state == 1 else 0.0
        self.state = 1 if self.state == 0 and action == 0 else 2
        return self.state, float(reward), self.state == 2, False, self._info()

    def render(self):
        frame = np.full((64, 192, 3), 255, dtype=np.uint8)  # A, B and the terminal state as three squares
        for state in range(3):
            frame[16:48, 64 * state + 16: 64 * state + 48] = 40 if state == self.state else 190
        return frame


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One env from any id gym.make takes, "package.module:Env-v0" included (gym.make imports the module,
    which registers the env), with --env-kwargs; one line and exit 2 when the id is unknown or making
    the env raises."""
    if MAXIMIZATION_BIAS_ID not in gym.registry:
        gym.register(MAXIMIZATION_BIAS_ID, entry_point=MaximizationBiasEnv)
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


def greedy_action(q_values: np.ndarray, mask: Optional[np.ndarray], rng: Optional[np.random.Generator]) -> int:
    """argmax over the actions the mask allows (all when None); ties broken at random with rng (a zero
    table would otherwise always pick the first action), or the first of them when rng is None (evaluation)."""
    allowed = np.arange(len(q_values)) if mask is None else np.flatnonzero(mask)
    best = allowed[q_values[allowed] == q_values[allowed].max()]
    return int(best[0] if rng is None else best[rng.integers(len(best))])


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator,
                   mask: Optional[np.ndarray] = None) -> int:
    """A random allowed action with probability epsilon; otherwise greedy over the allowed actions."""
    if rng.random() < epsilon:
        allowed = np.arange(len(q_values)) if mask is None else np.flatnonzero(mask)
        return int(allowed[rng.integers(len(allowed))])
    return greedy_action(q_values, mask, rng)


def td_target(reward: float, next_value: float, terminated: bool, gamma: float) -> float:
    """r + gamma * value of s'. Only a real termination drops the bootstrap: a truncated episode's
    final state still has a future, so its value is kept."""
    return reward + gamma * (1.0 - terminated) * next_value


def choose_tables(q_tables: np.ndarray, rng: np.random.Generator) -> tuple:
    """Eq. 6.10's coin flip: (Q1, Q2) or (Q2, Q1) with probability 1/2 each, as (updated, evaluator)
    views into q_tables, shape (2, n_states, n_actions)."""
    first = int(rng.integers(2))
    return q_tables[first], q_tables[1 - first]


def double_q_learning_update(q_update, q_other, obs, action, reward, next_obs, terminated, next_mask, alpha,
                             gamma, rng) -> float:
    """Eq. 6.10: Q1(S,A) <- Q1(S,A) + alpha [R + gamma Q2(S', argmax_a Q1(S',a)) - Q1(S,A)], the argmax over
    the actions allowed in S'; returns the TD error. With q_other = q_update this is Q-learning (Eq. 6.8)."""
    next_action = greedy_action(q_update[next_obs], next_mask, rng)
    td_error = td_target(reward, q_other[next_obs, next_action], terminated, gamma) - q_update[obs, action]
    q_update[obs, action] += alpha * td_error
    return td_error


def evaluate(q_tables: np.ndarray, args: Args, run_dir: str) -> list:
    """Greedy episodes on Q1 + Q2 in a fresh env seeded apart from training; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    q_sum = q_tables.sum(axis=0)  # (n_states, n_actions)
    returns = []
    for episode in range(args.eval_episodes):
        obs, info = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            action = greedy_action(q_sum[obs], info.get("action_mask"), rng=None)
            obs, reward, terminated, truncated, info = env.step(action)
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
        fail(f"--env-kwargs must be a JSON object such as '{{\"n_b_actions\": 100}}'; got {args.env_kwargs!r}")


def load_tables(args: Args, shape: tuple) -> np.ndarray:
    """Both Q-tables saved by --save-model (an .npz holding them, shape (2, n_states, n_actions), and the
    arguments they were trained with)."""
    try:
        with np.load(args.model_path) as saved:
            q_tables, saved_args = saved["q_tables"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a pair of Q-tables saved by double_q_learning.py (.npz): {error}")
    if q_tables.shape != shape:
        fail(f"--model-path holds an array of shape {q_tables.shape}; {args.env_id} needs {shape}")
    # Another env id or other env kwargs with the same spaces are allowed (a robustness check is a reason
    # to want it) but said aloud, since the returns are then not those of the env the tables learned in.
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was trained in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return q_tables


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(env.action_space, gym.spaces.Discrete):
        fail(f"double_q_learning.py needs Discrete observation and action spaces; {args.env_id} has "
             f"{env.observation_space} observations and {env.action_space} actions. Try dqn.py or reinforce.py.")

    q_tables = np.zeros((2, env.observation_space.n, env.action_space.n))  # (2, n_states, n_actions): Q1, Q2
    if args.model_path is not None:
        q_tables = load_tables(args, q_tables.shape)

    # "package.module:Env-v0" and "Namespace/Env-v0" make one directory name, not a path
    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    figure_log = FigureLog(args, run_name, run_dir)
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    episodes_csv = csv.writer(episodes_file)
    episodes_csv.writerow(["global_step", "episode_return", "episode_length", "wall_time"])

    rng = np.random.default_rng(args.seed)
    obs, info = env.reset(seed=args.seed)
    episodic_returns, episode_return, episode_length = [], 0.0, 0
    exploration_steps = int(args.exploration_fraction * args.total_timesteps)
    start_time = last_print = time.time()
    global_step = 0
    try:
        for global_step in range(1, args.total_timesteps + 1):
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            action = epsilon_greedy(q_tables[0, obs] + q_tables[1, obs], epsilon, rng, info.get("action_mask"))
            next_obs, reward, terminated, truncated, info = env.step(action)
            # next_obs is the true final state here (a single env does not reset by itself); info is its info.
            q_update, q_other = choose_tables(q_tables, rng)
            td_error = double_q_learning_update(q_update, q_other, obs, action, float(reward), next_obs, terminated,
                                                info.get("action_mask"), args.learning_rate, args.gamma, rng)
            if not np.isfinite(td_error):
                fail(f"the TD error became {td_error} at step {global_step}")
            obs = next_obs
            episode_return += float(reward)
            episode_length += 1
            if terminated or truncated:
                wall_time = time.time() - start_time
                episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                episodic_returns.append(episode_return)
                if figure_log.on:
                    figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                                    "charts/epsilon": epsilon, "charts/SPS": global_step / max(wall_time, 1e-9)}, step=global_step)
                obs, info = env.reset()
                episode_return, episode_length = 0.0, 0
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode: episodes can be 1 step long
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
        np.savez(model_file, q_tables=q_tables, args=json.dumps(vars(args)))  # the args as text: no pickle to load
        print(f"saved the Q-tables to {model_file}")
    eval_returns = evaluate(q_tables, args, run_dir)
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
            "wall_time": wall_time, "q_tables": q_tables}


if __name__ == "__main__":
    train(tyro.cli(Args))
