"""Prediction with eligibility traces: TD(lambda), true online TD(lambda) and the off-line lambda-return
algorithm (Sutton & Barto 2018, chapter 12).

Estimates v_pi of the UNIFORM RANDOM policy with a linear function v(s, w) = w . x(s), where x(s) is the
one-hot vector of a Discrete observation (a table is linear function approximation with one-hot features;
the update functions below take any feature vectors). The target of all three methods is the lambda-return
G^lambda_t = (1 - lambda) sum_n lambda^(n-1) G_{t:t+n} (Eq. 12.2), a weighted average of the n-step returns:
lambda = 0 is one-step TD, lambda = 1 Monte Carlo.
- offline_lambda_return (Section 12.1, Eq. 12.4): w stays fixed during the episode; at its end the
  lambda-returns are computed backward with those weights, G^lambda_t = R_{t+1} + gamma [(1 - lambda) v(S_{t+1})
  + lambda G^lambda_{t+1}], then for t = 0..T-1, one after another as Eq. 12.4 writes them,
  w <- w + alpha [G^lambda_t - v(S_t, w)] x(S_t), each error term with the current (already updated) w.
- td_lambda (Section 12.2, Eqs. 12.5-12.7, box p. 293): online, with an accumulating trace:
  z <- gamma lambda z + x(S); delta = R + gamma v(S') - v(S); w <- w + alpha delta z.
- true_online (default; Section 12.5, Eqs. 12.10-12.11, box p. 300; van Seijen & Sutton 2014,
  http://proceedings.mlr.press/v32/seijen14.html; van Seijen et al. 2016, JMLR 17(145)): a dutch trace
  z <- gamma lambda z + (1 - alpha gamma lambda z.x) x and w <- w + alpha (delta + V - V_old) z - alpha (V - V_old) x,
  which gives at every step exactly the weights of the online lambda-return algorithm (Section 12.4).
TD(lambda) blows up at large alpha and lambda (Figure 12.6): a NaN or inf stops the run with a message.

Episodes: traces (and V_old) are reset at every episode start. At a termination v(S_T) = 0; at a time-limit
truncation the tail bootstraps from v of the TRUE final state S_T: the n-step returns reaching past T are
replaced by G_{t:T} = R_{t+1} + ... + gamma^(T-t) v(S_T), which takes their whole weight lambda^(T-t-1) (the
truncated lambda-return, Eq. 12.9). Spaces: Discrete observations and Discrete actions (the uniform policy needs a
finite action set). The default env is the 19-state random walk of Example 7.1 / Section 12.1, built below,
whose true values are known: after every training episode the RMS error over its 19 states is recorded.
Evaluation episodes run the uniform random policy (the one predicted), so their mean return estimates
v_pi(start) for gamma = 1. Book: http://incompleteideas.net/book/the-book-2nd.html.

    python algorithms/td_lambda.py  # true online TD(0.8), alpha 0.1, 10,000 steps of the walk
    python algorithms/td_lambda.py --method td_lambda --lam 0.8 --learning-rate 0.4 --total-episodes 10  # Figure 12.6
    python algorithms/td_lambda.py --method offline_lambda_return --lam 1 --save-model  # every-visit Monte Carlo
    python algorithms/td_lambda.py --env-id FrozenLake-v1 --gamma 0.99
    python algorithms/td_lambda.py --model-path runs/.../td_lambda.npz --total-timesteps 0 --capture-video
The last line loads saved weights and only evaluates (and records the evaluation episodes). Measured, the
first: RMS error 0.059 after 103 episodes (seed 1; seeds 1-5 end between 0.04 and 0.26: a constant alpha
keeps following the latest episodes).
"""

import csv
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional, get_args

import gymnasium as gym
import numpy as np
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
FALLBACK_TIME_LIMIT = 500  # for envs registered without a time limit (CliffWalking-v1)
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
WALK_ID = "LucidRL/RandomWalk19-v0"
# A uniform random walk from the middle of 19 states lasts 100 steps on average; one of 10,000 steps is
# practically impossible, so this limit never truncates the book's setting.
WALK_TIME_LIMIT = 10_000
CELL_PIXELS = 16  # size of one walk cell in rendered frames
Method = Literal["td_lambda", "true_online", "offline_lambda_return"]


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of numpy's generator (the uniform policy's actions) and of the environment"""
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
    """save the weight vector w (and the arguments) to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load saved weights (.npz) before training; with --total-timesteps 0 this only evaluates"""
    env_id: str = WALK_ID
    """the Gymnasium environment id (Discrete observations and actions; default: the 19-state random walk);
    "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"is_slippery": false}'"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 10_000
    """environment steps of training (the walk's episodes last 100 steps on average: about 100 episodes)"""
    total_episodes: Optional[int] = None
    """stop after this many training episodes (the book's figures use 10); None: only the step budget counts"""
    method: Method = "true_online"
    """true_online (Section 12.5), td_lambda (accumulating traces, Section 12.2) or offline_lambda_return (12.1)"""
    lam: float = 0.8
    """lambda in [0, 1], the trace decay: 0 is one-step TD, 1 Monte Carlo"""
    learning_rate: float = 0.1
    """the step size alpha in [0, 1] (0 leaves w at its start: the left edge of Figures 12.3, 12.6, 12.8)"""
    gamma: float = 1.0
    """the discount factor"""
    eval_episodes: int = 10
    """evaluation episodes of the uniform random policy at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
class RandomWalk(gym.Env):
    """The 19-state random walk (Example 7.1, Section 12.1): cells 0..20 in a row, 1..19 non-terminal, start 10.
    Action 0 steps left, 1 right (the book's walk is the uniform random policy over them). Stepping into
    cell 0 pays -1, into cell 20 pays +1, and ends the episode; every other step pays 0."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    n_cells, start = 21, 10

    def __init__(self, render_mode: Optional[str] = None):
        self.render_mode, self.position = render_mode, self.start
        self.observation_space = gym.spaces.Discrete(self.n_cells)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.start
        return self.position, {}

    def step(self, action):
        self.position += 1 if action == 1 else -1
        reward = float(self.position == self.n_cells - 1) - float(self.position == 0)
        return self.position, reward, self.position in (0, self.n_cells - 1), False, {}

    def true_values(self, gamma: float = 1.0) -> np.ndarray:
        """v_pi of the uniform policy, 0 at the two terminal ends; shape (n_cells,). At gamma = 1 it is the chance
        of ending right minus that of ending left, (s - 10) / 10; below 1, the solution of the Bellman
        equations v(s) = sum over the two moves of 0.5 (r + gamma v(s')), s = 1..19."""
        last = self.n_cells - 1
        if gamma == 1.0:
            values = (np.arange(self.n_cells) - self.start) / self.start
            values[[0, last]] = 0.0
            return values
        system, rewards = np.eye(self.n_cells), np.zeros(self.n_cells)  # terminal rows: v = 0
        for state in range(1, last):
            for next_state in (state - 1, state + 1):
                rewards[state] += 0.5 * (float(next_state == last) - float(next_state == 0))
                if 0 < next_state < last:
                    system[state, next_state] -= 0.5 * gamma
        return np.linalg.solve(system, rewards)

    def render(self):
        """rgb_array frame for --capture-video: the -1 end red, the +1 end green, the walker blue."""
        frame = np.full((1, self.n_cells, 3), 255, dtype=np.uint8)
        frame[0, 0], frame[0, -1], frame[0, self.position] = (200, 0, 0), (0, 160, 0), (0, 0, 220)
        return frame.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)


def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One env from any id gym.make takes, "package.module:Env-v0" included (gym.make imports the module,
    which registers the env), with --env-kwargs; one line and exit 2 when the id is unknown or making
    the env raises."""
    if WALK_ID not in gym.registry:  # n_step_sarsa.py registers the same walk under this id
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
# Linear v(s, w) = w . x(s), so its gradient is x(s). The features of a terminal state are all zero, which
# makes v(terminal) = 0 as the boxes require; after a truncation the caller passes x of the true final state.
def td_lambda_step(weights, trace, features, reward, next_features, alpha, gamma, lam) -> float:
    """Semi-gradient TD(lambda) with an accumulating trace, in place; returns the TD error."""
    trace *= gamma * lam
    trace += features  # Eq. 12.5: z <- gamma lambda z + x(S)
    td_error = reward + gamma * float(weights @ next_features) - float(weights @ features)  # Eq. 12.6
    weights += alpha * td_error * trace  # Eq. 12.7
    return td_error


def true_online_td_lambda_step(weights, trace, features, reward, next_features, value_old, alpha, gamma, lam) -> tuple:
    """True online TD(lambda) with a dutch trace (box p. 300), in place. value_old is V_old, the previous
    step's v(S') (0 at an episode start); returns (TD error, the V_old for the next step)."""
    value, next_value = float(weights @ features), float(weights @ next_features)  # V, V' with the current w
    td_error = reward + gamma * next_value - value
    dutch = 1.0 - alpha * gamma * lam * float(trace @ features)  # uses z before its decay
    trace *= gamma * lam
    trace += dutch * features  # z <- gamma lambda z + (1 - alpha gamma lambda z.x) x
    # w <- w + alpha (delta + V - V_old) z - alpha (V - V_old) x: the correction that makes the weights
    # those of the online lambda-return algorithm (Section 12.4) at every step
    weights += alpha * (td_error + value - value_old) * trace
    weights -= alpha * (value - value_old) * features
    return td_error, next_value


def lambda_returns(rewards, next_values, gamma: float, lam: float) -> np.ndarray:
    """G^lambda_t for t = 0..T-1, backward: G^lambda_t = R_{t+1} + gamma [(1 - lambda) v(S_{t+1}) + lambda
    G^lambda_{t+1}], starting from G^lambda_T = v(S_T) (next_values[-1]: 0 after a termination; after a
    truncation v of the true final state, so the tail weight goes to it: Eq. 12.9 with h = T).
    next_values[t] is v(S_{t+1})."""
    returns = np.empty(len(rewards))
    following = next_values[-1]
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * ((1.0 - lam) * next_values[t] + lam * following)
        returns[t] = following
    return returns


def offline_lambda_return_update(weights, episode_features, rewards, final_features, alpha, gamma, lam) -> None:
    """The off-line lambda-return algorithm at the end of an episode, in place. episode_features (T, d):
    x(S_0)..x(S_{T-1}); final_features: x(S_T) (zeros after a termination). The lambda-returns use the
    weights of the episode (unchanged during it); then Eq. 12.4's updates are applied one after another,
    each error v(S_t, w) with the weights the previous ones left (Section 12.1)."""
    next_values = np.append(episode_features[1:] @ weights, float(weights @ final_features))  # (T,)
    targets = lambda_returns(rewards, next_values, gamma, lam)
    for features, target in zip(episode_features, targets):
        weights += alpha * (target - float(weights @ features)) * features


def rms_error(values: np.ndarray, true_values: np.ndarray, states: np.ndarray) -> float:
    """The book's measure: root mean square over `states` of v(s) - v_pi(s)."""
    return float(np.sqrt(np.mean((values[states] - true_values[states]) ** 2)))


def evaluate(args: Args, run_dir: str) -> list:
    """Episodes of the uniform random policy (the one predicted) in a fresh env seeded apart from training;
    returns their returns (for gamma = 1 their mean estimates v_pi of the start state)."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    rng = np.random.default_rng(args.seed + EVAL_SEED_OFFSET)
    returns = []
    for episode in range(args.eval_episodes):
        env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
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
    if args.total_timesteps < 0:
        fail(f"--total-timesteps must be >= 0 (0 only evaluates); got {args.total_timesteps}")
    if args.total_episodes is not None and args.total_episodes < 1:
        fail(f"--total-episodes must be >= 1 (or None: only the step budget counts); got {args.total_episodes}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1; got {args.eval_episodes}")
    if args.method not in get_args(Method):
        fail(f"--method must be one of {', '.join(get_args(Method))}; got {args.method}")
    if not (0.0 <= args.learning_rate <= 1.0 and 0.0 <= args.lam <= 1.0 and 0.0 <= args.gamma <= 1.0):
        fail(f"--learning-rate, --lam and --gamma must be in [0, 1]; got {args.learning_rate}, {args.lam}, "
             f"{args.gamma}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"is_slippery\": false}}'; got {args.env_kwargs!r}")


def check_spaces(env: gym.Env, args: Args) -> None:
    """One line and exit 2 for spaces this script cannot handle, naming a script that can."""
    if not isinstance(env.observation_space, gym.spaces.Discrete):
        fail(f"td_lambda.py needs Discrete observations (it one-hot codes them); {args.env_id} has "
             f"{env.observation_space}. Try sarsa_lambda.py, which tile-codes Box observations.")
    if not isinstance(env.action_space, gym.spaces.Discrete):
        fail(f"td_lambda.py needs Discrete actions (the policy it predicts picks uniformly among finitely many); "
             f"{args.env_id} has {env.action_space}. Try ppo_continuous.py or sac.py to learn to act there.")


def load_weights(args: Args, shape: tuple) -> np.ndarray:
    """The weights saved by --save-model (an .npz holding them and the arguments they were trained with)."""
    try:
        with np.load(args.model_path) as saved:
            weights, saved_args = saved["weights"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a weight vector saved by td_lambda.py (.npz): {error}")
    if weights.shape != shape:
        fail(f"--model-path holds weights of shape {weights.shape}; {args.env_id} needs {shape}")
    # Another env id or env kwargs with the same spaces are allowed but said aloud: the values are not this env's
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was trained in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return weights.astype(np.float64)


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    check_spaces(env, args)
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    feature_vectors = np.eye(n_states)  # x(s) is row s: one-hot features, so v(s, w) = w[s]
    no_features = np.zeros(n_states)  # x(terminal) = 0: v(terminal) = 0
    weights = np.zeros(n_states) if args.model_path is None else load_weights(args, (n_states,))
    # The walk knows its true values: RMS error over its non-terminal cells, all but the two ends.
    true_values = env.unwrapped.true_values(args.gamma) if hasattr(env.unwrapped, "true_values") else None
    walk_states = np.arange(1, n_states - 1)

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
    trace, value_old = np.zeros(n_states), 0.0  # z and V_old, reset at every episode start
    episode_obs, episode_rewards = [], []  # the off-line method's record of the episode
    episodic_returns, rms_errors, episode_return, episode_length = [], [], 0.0, 0
    start_time = last_print = time.time()
    global_step = 0
    try:
        for global_step in range(1, args.total_timesteps + 1):
            action = int(rng.integers(n_actions))  # the uniform random policy whose values we predict
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # next_obs is the true final state (a single env does not reset itself): only a termination zeroes x
            features, next_features = feature_vectors[obs], no_features if terminated else feature_vectors[next_obs]
            if args.method == "td_lambda":
                td_error = td_lambda_step(weights, trace, features, float(reward), next_features,
                                          args.learning_rate, args.gamma, args.lam)
            elif args.method == "true_online":
                td_error, value_old = true_online_td_lambda_step(weights, trace, features, float(reward), next_features,
                                                                 value_old, args.learning_rate, args.gamma, args.lam)
            else:  # off-line: the weights wait for the end of the episode
                episode_obs.append(obs)
                episode_rewards.append(float(reward))
                td_error = 0.0
            if not math.isfinite(td_error):
                fail(f"the TD error became {td_error} at step {global_step} (alpha {args.learning_rate}, lambda "
                     f"{args.lam}: TD(lambda) diverges at large alpha and lambda, Figure 12.6)")
            obs = next_obs
            episode_return += float(reward)
            episode_length += 1
            if terminated or truncated:
                if args.method == "offline_lambda_return":
                    offline_lambda_return_update(weights, feature_vectors[episode_obs], episode_rewards, next_features,
                                                 args.learning_rate, args.gamma, args.lam)
                    episode_obs, episode_rewards = [], []
                if not np.isfinite(weights).all():
                    fail(f"a weight became {weights[~np.isfinite(weights)][0]} at step {global_step} (alpha "
                         f"{args.learning_rate}, lambda {args.lam})")
                trace[:], value_old = 0.0, 0.0
                wall_time = time.time() - start_time
                episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                episodic_returns.append(episode_return)
                figures = {"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                           "charts/SPS": global_step / max(wall_time, 1e-9)}
                if true_values is not None:
                    rms_errors.append(rms_error(feature_vectors @ weights, true_values, walk_states))
                    figures["charts/rms_error"] = rms_errors[-1]
                if figure_log.on:
                    figure_log.log(figures, step=global_step)
                obs, _ = env.reset()
                episode_return, episode_length = 0.0, 0
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode
                    sps = global_step / wall_time
                    eta = int((args.total_timesteps - global_step) / sps)
                    rms = f" | RMS error {rms_errors[-1]:.4f}" if rms_errors else ""
                    print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                          f"{np.mean(episodic_returns[-10:]):.2f}{rms} | ETA {eta // 60}:{eta % 60:02d}")
                if args.total_episodes is not None and len(episodic_returns) >= args.total_episodes:
                    break
    except KeyboardInterrupt:  # an unfinished episode's off-line updates are dropped: its lambda-returns are unknown
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    env.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.npz")
        np.savez(model_file, weights=weights, args=json.dumps(vars(args)))  # the args as text: no pickle to load
        print(f"saved the weights to {model_file}")
    eval_returns = evaluate(args, run_dir)
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
    rms = f" | RMS error {rms_errors[-1]:.4f} after {len(rms_errors)} episodes" if rms_errors else ""
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS){rms} | uniform-policy evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time, "weights": weights, "rms_errors": rms_errors}


if __name__ == "__main__":
    train(tyro.cli(Args))
