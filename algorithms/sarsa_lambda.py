"""SARSA(λ) and true online SARSA(λ) with linear function approximation over tile coding
(Sutton & Barto 2018, §9.5.4, §10.1, §12.7 and §12.8; van Seijen et al. 2016, JMLR 17(145)).

The action value is linear in binary features, q(s, a) = Σ w[a, i] over the tiles i that contain s:
a tile coder lays `num_tilings` offset grids over the observation box, so nearby states share most of
their tiles and learning generalises between them. An eligibility trace z remembers which weights
produced recent estimates, so one TD error δ updates them all, each in proportion to its trace:
w ← w + α δ z (the backward view of the λ-return, §12.2). `--trace accumulating` adds 1 to the trace
of each active tile, `--trace replacing` sets it to 1 (§12.7). `--true-online` uses dutch traces and the
update of van Seijen et al. (the box on p. 307), which matches the online λ-return algorithm exactly.
λ = 0 is semi-gradient one-step SARSA (Figure 10.1); λ = 1 approaches Monte Carlo.

Spaces: Box observations, Discrete actions. Defaults: Mountain Car as in §10.1 and §12.7 (8 tilings of
8 x 8 tiles, α = 0.5 / 8 per tiling, γ = 1, ε = 0: the initial values 0 are optimistic against rewards
of −1, and that alone explores), here true online SARSA(λ) at λ = 0.9 on MountainCar-v0 with its
200-step limit. A time-limit truncation bootstraps from q(S', A') at the true final state (A' drawn
from the policy and never taken); only a termination drops it. Traces are cleared at every episode start.

Observations are tiled over the observation space's bounds; a bound that is infinite or larger than
UNBOUNDED (CartPole's velocities) is replaced by ±UNBOUNDED_RANGE, and --obs-low/--obs-high override
the box. Tile indices are hashed into `memory_size` weights per action (§9.5.4: "a consistent
pseudo-random collapsing of a large tiling into a much smaller set of tiles"), so memory does not grow
with the number of dimensions; the hash is a fixed function, so a saved model is just its weights.

    python algorithms/sarsa_lambda.py                                     # Mountain Car, true online, λ 0.9
    python algorithms/sarsa_lambda.py --no-true-online --trace replacing --lam 0.9
    python algorithms/sarsa_lambda.py --lam 0 --no-true-online            # semi-gradient one-step SARSA
    python algorithms/sarsa_lambda.py --env-id CartPole-v1 --gamma 0.99 --learning-rate 0.1 --start-e 0.1 --end-e 0.01 \
        --total-timesteps 100000                                          # greedy 500 (seed 1; rewards +1: 0 is not optimistic)
    python algorithms/sarsa_lambda.py --env-id Acrobot-v1 --tiles-per-dim 4 --memory-size 65536 --total-timesteps 100000
    python algorithms/sarsa_lambda.py --model-path runs/.../sarsa_lambda.npz --total-timesteps 0 --capture-video
The last line evaluates saved weights without training (and records the evaluation episodes).
"""

import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import gymnasium as gym
import numpy as np
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
FALLBACK_TIME_LIMIT = 500  # for envs registered without a time limit
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
UNBOUNDED = 1e6  # an observation bound beyond this (or infinite) is treated as no bound at all
UNBOUNDED_RANGE = 3.0  # ... and tiled over [-3, 3] instead: give --obs-low/--obs-high for a better box
# splitmix64's finaliser (Steele et al. 2014): mixes all 64 bits of a tile's coordinates into its index
HASH_SEED, HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
MIX_MULTIPLIER = np.uint64(0x94D049BB133111EB)


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
    """save the weights (and the arguments) to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load saved weights (.npz) before training; with --total-timesteps 0 this only evaluates them"""
    env_id: str = "MountainCar-v0"
    """the Gymnasium environment id (Box observations, Discrete actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs)"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 200_000
    """environment steps of training"""
    total_episodes: Optional[int] = None
    """stop after this many training episodes (the book's experiments count episodes); the step budget still applies"""
    learning_rate: float = 0.5
    """the step size times num_tilings (the book's convention: 0.5 means alpha = 0.5 / 8 with 8 tilings)"""
    gamma: float = 1.0
    """the discount factor"""
    lam: float = 0.9
    """lambda, the trace-decay parameter (0: one-step SARSA)"""
    trace: Literal["replacing", "accumulating"] = "replacing"
    """how an active tile's trace grows (without --true-online): set to 1 or incremented by 1 (§12.7)"""
    true_online: bool = True
    """true online SARSA(lambda) with dutch traces (van Seijen et al. 2016); --no-true-online uses --trace"""
    start_e: float = 0.0
    """epsilon at the start (0: the optimistic initial values do the exploring, §10.1)"""
    end_e: float = 0.0
    """epsilon at the end of the schedule"""
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon falls linearly from start_e to end_e"""
    num_tilings: int = 8
    """tilings (offset grids) over the observation box"""
    tiles_per_dim: int = 8
    """tiles across each observation dimension's range, in one tiling"""
    memory_size: int = 4096
    """weights per action that the tiles are hashed into"""
    obs_low: Optional[Tuple[float, ...]] = None
    """lower corner of the tiled box, one value per observation dimension (default: the space's bounds)"""
    obs_high: Optional[Tuple[float, ...]] = None
    """upper corner of the tiled box (default: the space's bounds)"""
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
    # an env registered without a time limit gets one: an episode must end
    return env if env.spec.max_episode_steps is not None else gym.wrappers.TimeLimit(env, FALLBACK_TIME_LIMIT)


# ---------------------------------------------------------------------------------------- Tile coding
def tiling_box(space: gym.spaces.Box, args: Args) -> tuple:
    """The box the tilings cover: --obs-low/--obs-high where given, else the space's bounds, with an
    unbounded dimension (CartPole's velocities) tiled over [-UNBOUNDED_RANGE, UNBOUNDED_RANGE]."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    low[~(np.abs(low) < UNBOUNDED)], high[~(np.abs(high) < UNBOUNDED)] = -UNBOUNDED_RANGE, UNBOUNDED_RANGE
    if args.obs_low is not None:
        low = np.array(args.obs_low, dtype=np.float64)
    if args.obs_high is not None:
        high = np.array(args.obs_high, dtype=np.float64)
    return low, high


def hash_coordinates(coordinates: np.ndarray, memory_size: int) -> np.ndarray:
    """(num_tilings, 1 + dims) integer tile coordinates -> (num_tilings,) indices in [0, memory_size).
    Each coordinate is folded in by multiply-and-xor, then splitmix64's finaliser mixes the bits, so
    keys that differ in any coordinate land apart. uint64 arithmetic wraps modulo 2^64 by design."""
    with np.errstate(over="ignore"):
        keys = np.full(len(coordinates), HASH_SEED, dtype=np.uint64)
        for column in coordinates.T.astype(np.uint64):  # a negative coordinate wraps to a large one: still distinct
            keys = (keys ^ column) * HASH_MULTIPLIER
        keys ^= keys >> np.uint64(31)
        keys *= MIX_MULTIPLIER
        keys ^= keys >> np.uint64(29)
    return (keys % np.uint64(memory_size)).astype(np.int64)


class TileCoder:
    """§9.5.4: `num_tilings` grids of `tiles_per_dim` tiles per dimension over [low, high], each offset
    from the first by a fraction of a tile. Tiling t is displaced by t * (1, 3, 5, ...) / num_tilings
    tile widths, the book's asymmetric offsets (uniform offsets would put every tiling's corners on
    the diagonal, Figure 9.11); with an odd displacement per dimension and num_tilings a power of two,
    each dimension sees the num_tilings offsets k / num_tilings, so moving a point by k / num_tilings
    of a tile along one axis changes exactly k of its tiles. Every tiling contributes one active tile;
    where two tilings' tiles hash to one weight, that weight is one active (binary) feature."""

    def __init__(self, low: np.ndarray, high: np.ndarray, num_tilings: int, tiles_per_dim: int, memory_size: int):
        self.low, self.memory_size = low, memory_size
        self.tiles_per_unit = tiles_per_dim / (high - low)  # (dims,)
        displacement = 2 * np.arange(len(low)) + 1  # (1, 3, 5, ...)
        self.offsets = np.arange(num_tilings)[:, None] * displacement[None, :] / num_tilings  # (num_tilings, dims)
        self.tiling_ids = np.arange(num_tilings)[:, None]  # part of a tile's key: tilings never share a tile

    def tiles(self, obs: np.ndarray) -> np.ndarray:
        """The active features of one observation: distinct weight indices, (num_tilings,) or fewer."""
        position = (np.asarray(obs, dtype=np.float64) - self.low) * self.tiles_per_unit  # (dims,) in tile widths
        coordinates = np.floor(position[None, :] + self.offsets).astype(np.int64)  # (num_tilings, dims)
        # Distinct: the updates write each index once (numpy's fancy-index +=), so q must count it once too,
        # or the step would not be the gradient of q where two tilings collide (0.6% of MountainCar's states
        # at 8 tilings and 4,096 weights), and true online SARSA(lambda) would lose its exactness there.
        # Sorted, as np.unique returns them; for 8 indices a Python set is 3x faster (1.2 against 3.9 us).
        indices = hash_coordinates(np.hstack([self.tiling_ids, coordinates]), self.memory_size)
        return np.array(sorted(set(indices.tolist())), dtype=np.int64)


# ---------------------------------------------------------------------------------------- Math
def linear_schedule(start_e: float, end_e: float, duration: int, t: int) -> float:
    """Epsilon falls linearly from start_e to end_e over `duration` steps, then stays."""
    return max(end_e, start_e + (end_e - start_e) * t / max(duration, 1))


def q_values(weights: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """q(s, a) for every action: the sum of the action's weights over the state's active tiles. (n_actions,)"""
    return weights[:, tiles].sum(axis=1)


def epsilon_greedy(action_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Random action with probability epsilon; otherwise greedy, breaking ties at random
    (with all weights 0, argmax alone would always pick action 0)."""
    if rng.random() < epsilon:
        return int(rng.integers(len(action_values)))
    return int(rng.choice(np.flatnonzero(action_values == action_values.max())))


def sarsa_lambda_update(weights, traces, action, tiles, td_error, alpha, gamma_lambda, trace) -> None:
    """One step of semi-gradient SARSA(lambda) with binary features (the box on p. 305), in place:
    z <- gamma lambda z + grad q(S, A) (Eq. 12.5; "replacing" sets the active traces to 1 instead of
    adding 1, §12.7), then w <- w + alpha delta z (Eq. 12.7). grad q(S, A) is 1 on the active tiles of A."""
    traces *= gamma_lambda
    if trace == "accumulating":
        traces[action, tiles] += 1.0
    else:
        traces[action, tiles] = 1.0
    weights += alpha * td_error * traces


def true_online_update(weights, traces, action, tiles, td_error, q_now, q_old, alpha, gamma_lambda) -> None:
    """One step of true online SARSA(lambda) (the box on p. 307; Eqs. 12.10-12.11 with q for v), in place:
    z <- gamma lambda z + (1 - alpha gamma lambda z.x) x, the dutch trace, then
    w <- w + alpha (delta + Q - Q_old) z - alpha (Q - Q_old) x, with x the binary features of (S, A),
    Q = w.x before this step's update and Q_old the bootstrap value q(S, A) had as the previous target."""
    trace_on_features = traces[action, tiles].sum()  # z.x, before the decay
    traces *= gamma_lambda
    traces[action, tiles] += 1.0 - alpha * gamma_lambda * trace_on_features
    weights += alpha * (td_error + q_now - q_old) * traces
    weights[action, tiles] -= alpha * (q_now - q_old)


def evaluate(weights: np.ndarray, coder: TileCoder, args: Args, run_dir: str) -> list:
    """Greedy episodes in a fresh env seeded apart from training; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(q_values(weights, coder.tiles(obs)))))
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
        fail(f"--total-episodes must be >= 1 (or left out); got {args.total_episodes}")
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1; got {args.eval_episodes}")
    if not 0.0 < args.learning_rate < np.inf or not 0.0 <= args.gamma <= 1.0 or not 0.0 <= args.lam <= 1.0:
        fail(f"--learning-rate must be > 0 and finite, --gamma and --lam in [0, 1]; got {args.learning_rate}, {args.gamma}, {args.lam}")
    if min(args.num_tilings, args.tiles_per_dim, args.memory_size) < 1:
        fail(f"--num-tilings, --tiles-per-dim and --memory-size must be >= 1; got {args.num_tilings}, "
             f"{args.tiles_per_dim}, {args.memory_size}")
    if not 0.0 <= args.end_e <= args.start_e <= 1.0:  # epsilon falls (linear_schedule holds it at end_e otherwise)
        fail(f"--start-e and --end-e must satisfy 0 <= end-e <= start-e <= 1; got {args.start_e}, {args.end_e}")
    if not 0.0 <= args.exploration_fraction < np.inf:  # the share of the budget over which epsilon falls
        fail(f"--exploration-fraction must be >= 0 and finite; got {args.exploration_fraction}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"continuous\": false}}'; got {args.env_kwargs!r}")


def check_spaces(env: gym.Env, args: Args) -> tuple:
    """The spaces this script handles (flat Box observations, Discrete actions) and a tiling box with
    low < high in every dimension; returns that box."""
    obs_space, action_space = env.observation_space, env.action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        fail(f"sarsa_lambda.py needs a Discrete action space; {args.env_id} has {action_space}. Try sac.py or ppo_continuous.py.")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        fail(f"sarsa_lambda.py needs flat Box observations to tile-code; {args.env_id} has {obs_space}. "
             f"Try sarsa.py or q_learning.py for Discrete observations.")
    low, high = tiling_box(obs_space, args)
    if low.shape != obs_space.shape or high.shape != obs_space.shape or not np.all(low < high):
        fail(f"--obs-low/--obs-high must give {obs_space.shape[0]} values each with low < high; got {low.tolist()}, {high.tolist()}")
    return low, high


def load_weights(args: Args, shape: tuple) -> np.ndarray:
    """The weights saved by --save-model (an .npz holding them and the arguments they were trained with)."""
    try:
        with np.load(args.model_path) as saved:
            weights, saved_args = saved["weights"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a model saved by sarsa_lambda.py (.npz): {error}")
    if weights.shape != shape:
        fail(f"--model-path holds weights of shape {weights.shape}; {args.env_id} with these tiles needs {shape}")
    tiling = ("num_tilings", "tiles_per_dim", "obs_low", "obs_high")
    saved_tiling = [saved_args.get(name) for name in tiling]
    if saved_tiling != [list(value) if isinstance(value, tuple) else value for value in (getattr(args, name) for name in tiling)]:
        fail(f"--model-path was trained with tiling {dict(zip(tiling, saved_tiling))}: give the same --num-tilings, "
             f"--tiles-per-dim, --obs-low and --obs-high")
    # Another env id or other env kwargs with the same spaces are allowed (a robustness check is a reason
    # to want it) but said aloud, since the returns are then not those of the env the weights learned in.
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was trained in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return weights


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    low, high = check_spaces(env, args)
    coder = TileCoder(low, high, args.num_tilings, args.tiles_per_dim, args.memory_size)
    weights = np.zeros((env.action_space.n, args.memory_size))  # (n_actions, memory_size): q = 0 is optimistic
    if args.model_path is not None:
        weights = load_weights(args, weights.shape)
    traces = np.zeros_like(weights)  # z, the eligibility trace of every weight
    alpha = args.learning_rate / args.num_tilings  # each of the num_tilings active tiles moves by alpha
    gamma_lambda = args.gamma * args.lam

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
    tiles = coder.tiles(obs)
    epsilon = args.start_e
    action = epsilon_greedy(q_values(weights, tiles), epsilon, rng)  # A, chosen before the first step
    q_old = 0.0  # true online: the previous step's bootstrap value of (S, A); 0 at an episode's start
    episodic_returns, episode_return, episode_length = [], 0.0, 0
    exploration_steps = int(args.exploration_fraction * args.total_timesteps)
    start_time = last_print = time.time()
    global_step = 0
    try:
        while global_step < args.total_timesteps and len(episodic_returns) != args.total_episodes:
            global_step += 1
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # next_obs is the true final state when the episode ends: a single env does not reset by itself
            next_tiles = coder.tiles(next_obs)
            next_action = epsilon_greedy(q_values(weights, next_tiles), epsilon, rng)  # A', on-policy
            q_now = weights[action, tiles].sum()  # q(S, A) under the current weights
            # only a termination drops the bootstrap; a truncated episode's final state still has a future
            q_next = 0.0 if terminated else weights[next_action, next_tiles].sum()
            td_error = float(reward) + args.gamma * q_next - q_now  # delta, Eq. 12.6 with q for v
            if not np.isfinite(td_error):
                fail(f"the TD error became {td_error} at step {global_step}: lower --learning-rate or --lam")
            if args.true_online:
                true_online_update(weights, traces, action, tiles, td_error, q_now, q_old, alpha, gamma_lambda)
                q_old = q_next
            else:
                sarsa_lambda_update(weights, traces, action, tiles, td_error, alpha, gamma_lambda, args.trace)
            tiles, action = next_tiles, next_action
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
                tiles = coder.tiles(obs)
                action = epsilon_greedy(q_values(weights, tiles), epsilon, rng)
                traces[:] = 0.0  # a trace never reaches back into the previous episode
                q_old, episode_return, episode_length = 0.0, 0.0, 0
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode
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
        np.savez(model_file, weights=weights, args=json.dumps(vars(args)))  # the args as text: no pickle to load
        print(f"saved the weights to {model_file}")
    eval_returns = evaluate(weights, coder, args, run_dir)
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
            "wall_time": wall_time, "weights": weights, "coder": coder}


if __name__ == "__main__":
    train(tyro.cli(Args))
