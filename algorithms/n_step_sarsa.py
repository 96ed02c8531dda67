"""n-step SARSA and n-step TD prediction (Sutton & Barto 2018, Chapter 7: Sections 7.1-7.2, Eqs. 7.2 and 7.4).

One-step TD (sarsa.py) bootstraps after one reward, Monte Carlo after none: n-step methods sit between.
The update for time tau waits until R_{tau+n} is seen, then moves the table toward the n-step return
G = R_{tau+1} + gamma R_{tau+2} + ... + gamma^(n-1) R_{tau+n} + gamma^n Q(S_{tau+n}, A_{tau+n}) (Eq. 7.4; with
V(S_{tau+n}) it is Eq. 7.2). n = 1 is SARSA / TD(0); n at least the episode length is Monte Carlo. Control
(default) is the box on p. 147, epsilon-greedy as in sarsa.py; --prediction is the box on p. 144: the state
values V of the uniform random policy (actions drawn uniformly, in training and in evaluation alike).
Book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Discrete observations and actions. Built in: the 19-state random walk of Example 7.1
("LucidRL/RandomWalk19-v0"), which knows its true values: with --prediction there, every training
episode logs the RMS error over its 19 states (the measure of Figure 7.2). Defaults: control on
CliffWalking-v1, n = 4, alpha 0.2, epsilon 0.1 falling to 0 over the first half of 13,000 steps (about
590 episodes), gamma 1. Measured over seeds 1-30: every greedy path reaches the goal (22 along the top
row, -17; 7 at -19; 1 at -15); the first 100 episodes return -64 on average, against -86 for n = 1 at
the same alpha (n-step returns spread the cliff's and the goal's news faster).

Ends of episodes: the window holds the last n steps; at the end of an episode (or of the step budget) its
pending updates are all made (the last n - 1, never dropped). A real termination inside the window cuts the
return there (no bootstrap past it); a time-limit truncation (or the budget's end) bootstraps from the TRUE
final state S_T: V(S_T) in prediction, Q(S_T, A_T) in control with A_T drawn from the epsilon-greedy policy
at S_T (as sarsa.py does; that A_T is never taken: the next episode draws a fresh first action).

    python algorithms/n_step_sarsa.py                                 # the cliff walk, n = 4
    python algorithms/n_step_sarsa.py --n-step 1 --learning-rate 0.5 --end-e 0.1  # exactly sarsa.py, Example 6.6
    python algorithms/n_step_sarsa.py --prediction --env-id LucidRL/RandomWalk19-v0 --n-step 4 --learning-rate 0.3
    python algorithms/n_step_sarsa.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/n_step_sarsa.py --model-path runs/.../n_step_sarsa.npz --total-timesteps 0 --capture-video
The last line evaluates a saved table without training (and records the evaluation episodes).
"""

import csv
import json
import os
import platform
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
FALLBACK_TIME_LIMIT = 500  # for envs registered without a time limit (CliffWalking-v1)
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
WALK_ID = "LucidRL/RandomWalk19-v0"
# A uniform random walk from the centre ends at either side within 100 steps on average; one lasting
# 10,000 steps is vanishingly rare, so this limit never alters the book's setting (it only guarantees an end).
WALK_TIME_LIMIT = 10_000
CELL_PIXELS = 16  # size of one cell in rendered frames
TABLE_NAMES = {True: "v_table", False: "q_table"}  # by args.prediction: the table's key in the .npz and in train()'s result


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
    """save the table (Q, or V with --prediction) and the arguments to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load a saved table (.npz) before training; with --total-timesteps 0 this only evaluates it"""
    env_id: str = "CliffWalking-v1"
    """the Gymnasium environment id (Discrete observations and actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"is_slippery": true}'"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 13_000
    """environment steps of training (the cliff walk: about 590 episodes at the defaults; a bound with --total-episodes)"""
    total_episodes: Optional[int] = None
    """stop after this many training episodes (the book's experiments count episodes); None: only the step budget"""
    prediction: bool = False
    """n-step TD prediction (Eq. 7.2) of the state values V of the uniform random policy, instead of control"""
    n_step: int = 4
    """n, the number of rewards before bootstrapping (1: SARSA / TD(0); at least the episode length: Monte Carlo)"""
    learning_rate: float = 0.2
    """the step size alpha of Eqs. 7.2 and 7.4 (0 is allowed with --prediction: V then stays 0)"""
    gamma: float = 1.0
    """the discount factor"""
    start_e: float = 0.1
    """epsilon at the start of training (control only)"""
    end_e: float = 0.0
    """epsilon at the end of the schedule (0: the greedy policy at the end is the one that learned its values)"""
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon falls linearly from start_e to end_e"""
    eval_episodes: int = 10
    """evaluation episodes at the end: greedy in control, the uniform random policy with --prediction"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
class RandomWalk(gym.Env):
    """Example 7.1's 19-state random walk: states 1..19 in a row between the terminal states 0 and 20,
    start 10. Action 0 steps left, 1 right (the book's walk is the uniform random policy over them).
    Reward -1 on stepping into state 0, +1 into state 20, 0 otherwise; both ends terminate."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    n_states, start = 21, 10

    def __init__(self, render_mode: Optional[str] = None):
        self.render_mode, self.state = render_mode, self.start
        self.observation_space = gym.spaces.Discrete(self.n_states)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.start
        return self.state, {}

    def step(self, action):
        self.state += 1 if action == 1 else -1
        terminated = self.state in (0, self.n_states - 1)
        reward = float(np.sign(self.state - self.start)) if terminated else 0.0
        return self.state, reward, terminated, False, {}

    def true_values(self, gamma: float = 1.0) -> np.ndarray:
        """v_pi of the uniform policy, 0 at the two terminal ends; shape (n_states,). At gamma = 1 it is the chance
        of ending right minus that of ending left, (s - 10) / 10; below 1, the solution of the Bellman
        equations v(s) = sum over the two moves of 0.5 (r + gamma v(s')), s = 1..19."""
        last = self.n_states - 1
        if gamma == 1.0:
            values = (np.arange(self.n_states) - self.start) / self.start
            values[[0, last]] = 0.0
            return values
        system, rewards = np.eye(self.n_states), np.zeros(self.n_states)  # terminal rows: v = 0
        for state in range(1, last):
            for next_state in (state - 1, state + 1):
                rewards[state] += 0.5 * (float(next_state == last) - float(next_state == 0))
                if 0 < next_state < last:
                    system[state, next_state] -= 0.5 * gamma
        return np.linalg.solve(system, rewards)

    def render(self):
        """rgb_array frame for --capture-video: a row of cells, terminals grey, the agent red."""
        frame = np.full((1, self.n_states, 3), 255, dtype=np.uint8)
        frame[0, [0, self.n_states - 1]] = 128
        frame[0, self.state] = (220, 0, 0)
        return frame.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One env from any id gym.make takes, "package.module:Env-v0" included (gym.make imports the module,
    which registers the env), with --env-kwargs; one line and exit 2 when the id is unknown or making
    the env raises."""
    if WALK_ID not in gym.registry:
        gym.register(WALK_ID, entry_point=RandomWalk, max_episode_steps=WALK_TIME_LIMIT)
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


def policy_action(table: np.ndarray, obs: int, n_actions: int, epsilon: float, prediction: bool,
                  rng: np.random.Generator) -> int:
    """The behaviour policy: uniform random in prediction (the policy whose V is estimated), else epsilon-greedy in Q."""
    return int(rng.integers(n_actions)) if prediction else epsilon_greedy(table[obs], epsilon, rng)


def table_key(obs: int, action: int, prediction: bool) -> tuple:
    """The table entry a step updates or bootstraps from: V(S) in prediction, Q(S, A) in control."""
    return (obs,) if prediction else (obs, action)


def n_step_return(rewards, gamma: float, bootstrap_value: float) -> float:
    """G = R_1 + gamma R_2 + ... + gamma^(k-1) R_k + gamma^k * bootstrap_value, k = len(rewards): Eq. 7.1
    (and the G of Eqs. 7.2, 7.4). Pass bootstrap_value 0 when the episode terminated within the k steps."""
    rewards = np.asarray(rewards, dtype=float)
    return float(np.dot(gamma ** np.arange(len(rewards)), rewards) + gamma ** len(rewards) * bootstrap_value)


def n_step_updates(table: np.ndarray, pending_keys: deque, pending_rewards: deque, next_key: tuple,
                   terminated: bool, episode_over: bool, n: int, alpha: float, gamma: float) -> list:
    """Called once R_{t+1} and S_{t+1} (and A_{t+1}) are seen, with pending_keys = the entries (S_tau[, A_tau])
    not yet updated, oldest first, and pending_rewards = R_{tau+1}, ..., R_{t+1}. When the window holds n
    rewards, the update for tau = t - n + 1 (Eq. 7.2 or 7.4); when the episode is over, every pending one too
    (the last n - 1, each over fewer rewards). The bootstrap is table[next_key] at S_{t+1}, read afresh for
    each update, and none past a termination. Updated entries leave the window; returns the errors G - value."""
    errors = []
    while len(pending_keys) == n or (episode_over and pending_keys):
        bootstrap_value = 0.0 if terminated else float(table[next_key])
        key = pending_keys.popleft()
        error = n_step_return(pending_rewards, gamma, bootstrap_value) - table[key]
        table[key] += alpha * error
        pending_rewards.popleft()
        errors.append(float(error))
    return errors


def rms_error(values: np.ndarray, true_values: np.ndarray, states: np.ndarray) -> float:
    """Figure 7.2's measure: the root mean square over `states` of V(s) - v_pi(s)."""
    return float(np.sqrt(np.mean((values[states] - true_values[states]) ** 2)))


def evaluate(table: np.ndarray, args: Args, run_dir: str) -> list:
    """Episodes in a fresh env seeded apart from training, greedy in Q or (prediction) uniform; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    rng = np.random.default_rng(args.seed + EVAL_SEED_OFFSET)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            action = int(rng.integers(env.action_space.n)) if args.prediction else int(np.argmax(table[obs]))
            obs, reward, terminated, truncated, _ = env.step(action)
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
    if args.total_episodes is not None and args.total_episodes < 1:
        fail(f"--total-episodes must be >= 1 (or left out); got {args.total_episodes}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1; got {args.eval_episodes}")
    if args.n_step < 1:
        fail(f"--n-step must be >= 1 (1 is SARSA / TD(0)); got {args.n_step}")
    # alpha = 0 learns nothing: allowed in prediction only, as the left edge of Figure 7.2
    alpha_ok = 0.0 <= args.learning_rate <= 1.0 and (args.prediction or args.learning_rate > 0.0)
    if not alpha_ok or not 0.0 <= args.gamma <= 1.0:
        fail(f"--learning-rate must be in {'[0, 1]' if args.prediction else '(0, 1]'} and --gamma in [0, 1]; "
             f"got {args.learning_rate}, {args.gamma}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"is_slippery\": true}}'; got {args.env_kwargs!r}")


def load_table(args: Args, shape: tuple) -> np.ndarray:
    """The table saved by --save-model (an .npz holding it and the arguments it was trained with): V for
    --prediction, Q otherwise; the other kind is refused."""
    wanted, other = TABLE_NAMES[args.prediction], TABLE_NAMES[not args.prediction]
    try:
        with np.load(args.model_path) as saved:
            if other in saved.files:  # the other mode's table: V cannot act greedily, Q is not V of the uniform policy
                fail(f"--model-path {args.model_path} holds " + (
                    "a Q-table (control); --prediction needs state values V: leave out --prediction to evaluate it"
                    if args.prediction else
                    "state values V (saved with --prediction); control needs a Q-table: add --prediction to evaluate it"))
            table, saved_args = saved[wanted], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a table saved by n_step_sarsa.py (.npz): {error}")
    if table.shape != shape:
        fail(f"--model-path holds a table of shape {table.shape}; {args.env_id} needs {shape}")
    # Another env id or other env kwargs with the same spaces are allowed (a robustness check is a reason
    # to want it) but said aloud, since the returns are then not those of the env the table learned in.
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was trained in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return table


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    obs_space, action_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Discrete) or not isinstance(action_space, gym.spaces.Discrete):
        fail(f"n_step_sarsa.py needs Discrete observation and action spaces; {args.env_id} has {obs_space} observations "
             f"and {action_space} actions. Try " + ("sarsa_lambda.py (tile coding), reinforce.py or ppo.py."
                                                   if isinstance(action_space, gym.spaces.Discrete) else "ppo_continuous.py."))

    n_actions = int(action_space.n)
    shape = (obs_space.n,) if args.prediction else (obs_space.n, n_actions)
    table = np.zeros(shape)  # V: (n_states,) with --prediction, else Q: (n_states, n_actions)
    if args.model_path is not None:
        table = load_table(args, shape)
    # Figure 7.2's RMS error where the env knows its true values (the walk, also registered by td_lambda.py),
    # over a walk's non-terminal states: all but its two ends
    true_values = env.unwrapped.true_values(args.gamma) if args.prediction and hasattr(env.unwrapped, "true_values") else None
    walk_states = np.arange(1, obs_space.n - 1)

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
    episodic_returns, rms_errors, episode_return, episode_length = [], [], 0.0, 0
    exploration_steps = int(args.exploration_fraction * args.total_timesteps)
    action = policy_action(table, obs, n_actions, args.start_e, args.prediction, rng)  # A_0: chosen before the first step
    # The window: the entries (S_tau[, A_tau]) not yet updated, oldest first, and R_{tau+1}, ..., R_{t+1}.
    # With S_{t+1} (and A_{t+1}) beside them, these are the last n + 1 states, actions and rewards.
    pending_keys, pending_rewards = deque(), deque()
    start_time = last_print = time.time()
    global_step = 0
    try:
        for global_step in range(1, args.total_timesteps + 1):
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # next_obs is the true final state here: a single env does not reset by itself. A_{t+1} comes
            # from the behaviour policy and, unless the episode ends, is the action taken next (on-policy);
            # after a truncation it only serves the bootstrap Q(S_T, A_T).
            next_action = policy_action(table, next_obs, n_actions, epsilon, args.prediction, rng)
            pending_keys.append(table_key(obs, action, args.prediction))
            pending_rewards.append(float(reward))
            # the budget's end cuts the episode as a time limit would: the pending updates bootstrap, none is dropped
            episode_cut = terminated or truncated or global_step == args.total_timesteps
            errors = n_step_updates(table, pending_keys, pending_rewards, table_key(next_obs, next_action, args.prediction),
                                    terminated, episode_cut, args.n_step, args.learning_rate, args.gamma)
            if not np.all(np.isfinite(errors)):
                fail(f"the n-step TD error became {errors} at step {global_step}")
            obs, action = next_obs, next_action
            episode_return += float(reward)
            episode_length += 1
            if terminated or truncated:
                wall_time = time.time() - start_time
                episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                episodic_returns.append(episode_return)
                figures = {"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                           "charts/epsilon": epsilon, "charts/SPS": global_step / max(wall_time, 1e-9)}
                if true_values is not None:
                    rms_errors.append(rms_error(table, true_values, walk_states))
                    figures["charts/rms_error"] = rms_errors[-1]
                if figure_log.on:
                    figure_log.log(figures, step=global_step)
                if args.total_episodes is not None and len(episodic_returns) >= args.total_episodes:
                    break
                obs, _ = env.reset()
                action = policy_action(table, obs, n_actions, epsilon, args.prediction, rng)
                episode_return, episode_length = 0.0, 0
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode: episodes can be 13 steps long
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
        # the args as text: no pickle to load
        np.savez(model_file, **{TABLE_NAMES[args.prediction]: table}, args=json.dumps(vars(args)))
        print(f"saved the table to {model_file}")
    eval_returns = evaluate(table, args, run_dir)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "gymnasium": gym.__version__, "numpy": np.__version__}}
    if rms_errors:
        summary["rms_error"] = rms_errors[-1]
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/return_mean": summary["eval_return_mean"], "eval/return_std": summary["eval_return_std"]},
                   step=global_step)
    figure_log.close()
    rms = f" | RMS error {rms_errors[-1]:.4f}" if rms_errors else ""
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS){rms} | evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time, "rms_errors": rms_errors, TABLE_NAMES[args.prediction]: table}


if __name__ == "__main__":
    train(tyro.cli(Args))
