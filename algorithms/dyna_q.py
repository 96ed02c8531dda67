"""Tabular Dyna-Q (Sutton 1990; Sutton & Barto 2018, Section 8.2, the box "Tabular Dyna-Q").

Q-learning plus planning. After every real step: (d) the Q-learning update of Eq. 6.8; (e) the model
learns Model(S, A) <- R, S', terminated; (f) `planning_steps` (the book's n) more Q-learning updates, each
on a previously observed (S, A) drawn uniformly, with the model's R and S' (the book draws a visited
state, then an action taken there). With n = 0 this is exactly q_learning.py. The model is deterministic,
as the book's: it keeps each pair's latest outcome, so it is wrong on stochastic envs (on slippery
FrozenLake n = 5 learns a worse policy than n = 0). Paper: https://doi.org/10.1016/B978-1-55860-141-3.50030-4
(Sutton 1990); book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Discrete observations and Discrete actions. The defaults are Figure 8.2: the Dyna maze (built
below), alpha 0.1, epsilon 0.1, gamma 0.95, n = 5, about 50 episodes. Only a real termination drops the
bootstrap, in the model too: a time-limit truncation is stored as not terminated.

    python algorithms/dyna_q.py                                       # Figure 8.2: the Dyna maze, n = 5
    python algorithms/dyna_q.py --planning-steps 50
    python algorithms/dyna_q.py --env-id Taxi-v4 --total-timesteps 50000 --gamma 0.99 --save-model
    python algorithms/dyna_q.py --env-id FrozenLake-v1 --env-kwargs '{"is_slippery": false}' --gamma 0.99
    python algorithms/dyna_q.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/dyna_q.py --model-path runs/.../dyna_q.npz --total-timesteps 0 --capture-video
The last line evaluates a saved Q-table without training (and records the evaluation episodes).
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
MAZE_ID = "LucidRL/DynaMaze-v0"
MAZE_TIME_LIMIT = 10_000  # episode 1 is a random walk (all Q = 0; mean 869 steps): 3 in a million exceed this
CELL_PIXELS = 16  # size of one maze cell in rendered frames


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
    """save the Q-table and arguments to runs/{run_name}/{exp_name}.npz (the learned env model is not needed to act)"""
    model_path: Optional[str] = None
    """load a saved Q-table (.npz) before training; with --total-timesteps 0 this only evaluates it"""
    env_id: str = MAZE_ID
    """the Gymnasium environment id (Discrete observations and actions; default: the maze of Figure 8.2);
    "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"is_slippery": false}'"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 1_700
    """environment steps of training (the maze, n = 5: 50 episodes take 1,670 steps, median of 30 runs)"""
    planning_steps: int = 5
    """n, planning updates per real step (Figure 8.2: n = 5 gets most of n = 50's speed-up at a tenth of the cost)"""
    learning_rate: float = 0.1
    """the step size alpha of Eq. 6.8, for real and planning updates"""
    gamma: float = 0.95
    """the discount factor"""
    start_e: float = 0.1
    """epsilon at the start of training"""
    end_e: float = 0.1
    """epsilon at the end of the schedule (Figure 8.2: a constant 0.1)"""
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon falls linearly from start_e to end_e"""
    eval_episodes: int = 10
    """greedy evaluation episodes at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
class DynaMaze(gym.Env):
    """Figure 8.2's maze: 6 x 9 cells, start (2, 0), goal (0, 8), seven wall cells. Observation
    row * 9 + column; actions 0 up, 1 down, 2 left, 3 right. A move into a wall or off the grid leaves
    the agent in place. Reward 0, except +1 on reaching the goal, which terminates (shortest path: 14)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    rows, columns, start, goal = 6, 9, (2, 0), (0, 8)
    walls = ((1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7))
    moves = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right

    def __init__(self, render_mode: Optional[str] = None):
        self.render_mode, self.position = render_mode, self.start
        self.observation_space = gym.spaces.Discrete(self.rows * self.columns)
        self.action_space = gym.spaces.Discrete(len(self.moves))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.start
        return self.position[0] * self.columns + self.position[1], {}

    def step(self, action):
        row, column = self.position[0] + self.moves[action][0], self.position[1] + self.moves[action][1]
        if 0 <= row < self.rows and 0 <= column < self.columns and (row, column) not in self.walls:
            self.position = (row, column)
        terminated = self.position == self.goal
        return self.position[0] * self.columns + self.position[1], float(terminated), terminated, False, {}

    def render(self):
        """rgb_array frame for --capture-video: walls black, goal green, agent red."""
        frame = np.full((self.rows, self.columns, 3), 255, dtype=np.uint8)
        for wall in self.walls:
            frame[wall] = 0
        frame[self.goal], frame[self.position] = (0, 160, 0), (220, 0, 0)
        return frame.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One env from any id gym.make takes, "package.module:Env-v0" included (gym.make imports the module,
    which registers the env), with --env-kwargs; one line and exit 2 when the id is unknown or making
    the env raises."""
    if MAZE_ID not in gym.registry:
        gym.register(MAZE_ID, entry_point=DynaMaze, max_episode_steps=MAZE_TIME_LIMIT)
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


# ---------------------------------------------------------------------------------------- Model
class Model:
    """Step (e) of the box: a deterministic model, Model(S, A) <- R, S', terminated, as tables, plus the
    list of observed pairs so that planning draws only from those, in O(1)."""

    def __init__(self, n_states: int, n_actions: int):
        self.rewards = np.zeros((n_states, n_actions))
        self.next_obs = np.zeros((n_states, n_actions), dtype=np.int64)
        self.terminations = np.zeros((n_states, n_actions), dtype=bool)
        self.observed = np.zeros((n_states, n_actions), dtype=bool)
        self.observed_pairs = np.zeros((n_states * n_actions, 2), dtype=np.int64)  # (obs, action), first n_observed
        self.n_observed = 0

    def update(self, obs: int, action: int, reward: float, next_obs: int, terminated: bool) -> None:
        if not self.observed[obs, action]:
            self.observed[obs, action] = True
            self.observed_pairs[self.n_observed] = obs, action
            self.n_observed += 1
        self.rewards[obs, action], self.next_obs[obs, action] = reward, next_obs
        self.terminations[obs, action] = terminated

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """`size` previously observed (obs, action) pairs, uniformly with replacement: (size, 2)."""
        return self.observed_pairs[rng.integers(self.n_observed, size=size)]


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


def td_target(reward: float, next_q_values: np.ndarray, terminated: bool, gamma: float) -> float:
    """r + gamma * max_a' Q(s', a'). Only a real termination drops the bootstrap: a truncated
    episode's final state still has a future, so its value is kept."""
    return reward + gamma * (1.0 - terminated) * float(next_q_values.max())


def q_learning_update(q_table, obs, action, reward, next_obs, terminated, alpha, gamma) -> float:
    """Eq. 6.8: Q(S,A) <- Q(S,A) + alpha [R + gamma max_a Q(S',a) - Q(S,A)]; returns the TD error."""
    td_error = td_target(reward, q_table[next_obs], terminated, gamma) - q_table[obs, action]
    q_table[obs, action] += alpha * td_error
    return td_error


def planning(q_table: np.ndarray, model: Model, n: int, alpha: float, gamma: float, rng: np.random.Generator) -> None:
    """Step (f): n Q-learning updates on simulated steps from observed pairs, one after another."""
    for obs, action in model.sample(n, rng).tolist():
        q_learning_update(q_table, obs, action, model.rewards[obs, action], model.next_obs[obs, action],
                          model.terminations[obs, action], alpha, gamma)


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
    if args.planning_steps < 0:
        fail(f"--planning-steps must be >= 0 (0 is Q-learning); got {args.planning_steps}")
    if not 0.0 < args.learning_rate <= 1.0 or not 0.0 <= args.gamma <= 1.0:
        fail(f"--learning-rate must be in (0, 1] and --gamma in [0, 1]; got {args.learning_rate}, {args.gamma}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"is_slippery\": false}}'; got {args.env_kwargs!r}")


def load_table(args: Args, shape: tuple) -> np.ndarray:
    """The Q-table saved by --save-model (an .npz holding it and the arguments it was trained with)."""
    try:
        with np.load(args.model_path) as saved:
            q_table, saved_args = saved["q_table"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a Q-table saved by dyna_q.py (.npz): {error}")
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
        fail(f"dyna_q.py needs Discrete observation and action spaces; {args.env_id} has "
             f"{env.observation_space} observations and {env.action_space} actions. Try reinforce.py.")

    q_table = np.zeros((env.observation_space.n, env.action_space.n))  # (n_states, n_actions)
    if args.model_path is not None:
        q_table = load_table(args, q_table.shape)
    model = Model(*q_table.shape)

    # "package.module:Env-v0" and "Namespace/Env-v0" make one directory name, not a path
    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    figure_log = FigureLog(args, run_name, run_dir)
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    episodes_csv = csv.writer(episodes_file)
    episodes_csv.writerow(["global_step", "episode_return", "episode_length", "wall_time"])

    rng = np.random.default_rng(args.seed)
    # Planning draws from a child generator, so acting sees the same numbers whatever n is: on the maze,
    # where Q stays 0 until the goal is first reached, episode 1 is then the same for every n.
    planning_rng = rng.spawn(1)[0]
    obs, _ = env.reset(seed=args.seed)
    episodic_returns, episode_return, episode_length = [], 0.0, 0
    exploration_steps = int(args.exploration_fraction * args.total_timesteps)
    start_time = last_print = time.time()
    global_step = 0
    try:
        for global_step in range(1, args.total_timesteps + 1):
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            action = epsilon_greedy(q_table[obs], epsilon, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # next_obs is the true final state here: a single env does not reset by itself.
            td_error = q_learning_update(q_table, obs, action, float(reward), next_obs, terminated,  # (d)
                                         args.learning_rate, args.gamma)
            if not np.isfinite(td_error):
                fail(f"the TD error became {td_error} at step {global_step}")
            model.update(obs, action, float(reward), next_obs, terminated)  # (e): a time limit is not terminal
            if args.planning_steps > 0:
                planning(q_table, model, args.planning_steps, args.learning_rate, args.gamma, planning_rng)  # (f)
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
                obs, _ = env.reset()
                episode_return, episode_length = 0.0, 0
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode: episodes can be 14 steps long
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
