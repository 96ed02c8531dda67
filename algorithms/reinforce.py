"""REINFORCE with an optional learned baseline (Williams 1992; Sutton & Barto 2018, Sections 13.3-13.4).

The Monte Carlo policy gradient: play whole episodes with the current policy, compute each step's
discounted return G_t, and raise the log-probability of every action in proportion to G_t (minus a
learned state-value baseline b(s_t), which lowers the variance without biasing the gradient).
Paper: https://link.springer.com/article/10.1007/BF00992696; book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Box observations; Discrete actions (Categorical policy) or Box actions (Gaussian policy with
a state-independent log-std; the sample is clipped to the bounds only for the env, the log-prob uses
the unclipped sample). Each iteration resets the `num_envs` vector envs and plays exactly one whole
episode in each: an env that finishes early keeps stepping until the slowest one ends, and those idle
steps are discarded (but counted in global_step, which is always environment steps).

Deliberate choices: the gradient drops the gamma^t factor of the book's pseudocode (as almost every
implementation does). A time-limit truncation is not an end: with the baseline, the truncated step's
return is bootstrapped, G_T-1 = r + gamma * b(final obs); without it there is nothing to bootstrap from,
so the episode is treated as if it had ended there (the return past the time limit counts as zero).

    python algorithms/reinforce.py                                    # CartPole-v1
    python algorithms/reinforce.py --env-id Acrobot-v1 --no-baseline
    python algorithms/reinforce.py --env-id Pendulum-v1 --ent-coef 0.001
    python algorithms/reinforce.py --env-kwargs '{"sutton_barto_reward": true}'  # CartPole: -1 at the end, 0 before
    python algorithms/reinforce.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/reinforce.py --model-path runs/.../reinforce.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 100000 --checkpoint-dir ~/checkpoints` writes, at the end of the
iteration that reaches each multiple, everything the run needs to go on (networks, optimizers, every
random state, counters, the episodes so far; every iteration plays fresh episodes, so no rollout is
saved); rerunning the same command with `--resume PATH` continues it in its run directory, bitwise on
CPU as if it had never stopped. An env whose state pickles (classic control, most pure-Python envs) is
saved as it is; MuJoCo and Box2D envs pickle only their constructor arguments, so their checkpoint
holds how the current episode began and its actions, and resuming replays them.
"""

import copy
import csv
import glob
import json
import os
import pickle
import platform
import random
import sys
import time
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions import Categorical, Normal

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of random, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """make cuDNN deterministic (CPU runs are deterministic at a fixed thread count anyway)"""
    cuda: bool = True
    """use a GPU when one is available"""
    track: bool = False
    """log to Weights & Biases"""
    tensorboard: bool = False
    """write the same figures as TensorBoard event files into the run directory"""
    wandb_project_name: str = "lucidrl"
    """the W&B project"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    capture_video: bool = False
    """record the evaluation episodes to runs/{run_name}/videos"""
    save_model: bool = False
    """save the model to runs/{run_name}/{exp_name}.pt"""
    model_path: Optional[str] = None
    """load a saved model before training; with --total-timesteps 0 this only evaluates it"""
    checkpoint_every: int = 0
    """write a checkpoint to resume from every this many environment steps (0: never); the latest two are kept"""
    checkpoint_dir: Optional[str] = None
    """where checkpoints go; None: runs/{run_name}/checkpoints (keep a long run's outside the work tree)"""
    resume: Optional[str] = None
    """a checkpoint to continue, given with the run's own arguments: the run goes on in its run directory"""
    env_id: str = "CartPole-v1"
    """the Gymnasium environment id (Box observations; Discrete or Box actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"sutton_barto_reward": true}'"""
    flatten_obs: bool = False
    """flatten Dict or Tuple observations into one vector (gymnasium.wrappers.FlattenObservation)"""
    total_timesteps: int = 500_000
    """environment steps of training (idle steps included)"""
    num_envs: int = 8
    """parallel environments: episodes per policy update"""
    learning_rate: float = 1e-3
    """Adam step size of the policy"""
    baseline: bool = True
    """learn a state-value baseline b(s) and use G_t - b(s_t) as the policy-gradient weight"""
    baseline_learning_rate: float = 1e-3
    """Adam step size of the baseline"""
    gamma: float = 0.99
    """the discount factor"""
    normalize_returns: bool = True
    """standardise the policy-gradient weights (G_t, or G_t - b(s_t)) over each batch"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    max_grad_norm: float = 0.5
    """clip each network's gradient to this global norm"""
    hidden_size: int = 64
    """units in each of the two hidden layers"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
def make_env(env_id: str, env_kwargs: dict, flatten_obs: bool, render_mode: Optional[str] = None):
    """A thunk that makes one env. Any id gym.make takes works, "package.module:Env-v0" included (gym.make
    imports the module, which registers the env)."""
    def thunk() -> gym.Env:
        # render_mode is handed to the env's constructor: pass it only when asked for, so an env whose
        # constructor has no such parameter still trains
        env = gym.make(env_id, **env_kwargs, **({"render_mode": render_mode} if render_mode else {}))
        # inside each sub-env: vector observation wrappers refuse the SAME_STEP autoreset mode
        return EpisodeRecorder(gym.wrappers.FlattenObservation(env) if flatten_obs else env)

    return thunk


class EpisodeRecorder(gym.Wrapper):
    """Keeps what rebuilds the env's state by replay: how its latest reset began (the seed, or the random
    state just before it) and the actions taken since. A checkpoint of an env whose state does not
    pickle holds these; resuming redoes the reset and the actions (see restore_envs)."""

    def reset(self, *, seed=None, options=None):
        self.reset_from = (seed, copy.deepcopy(self.unwrapped.np_random.bit_generator.state), options)
        self.actions_since_reset = []  # at most one episode of actions
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.actions_since_reset.append(np.copy(action))
        return self.env.step(action)


def make_training_envs(args: Args, env_kwargs: dict) -> gym.vector.VectorEnv:
    """The vector env, or one line and exit 2 when the id is unknown or making the env raises."""
    if ":" in args.env_id and os.getcwd() not in sys.path:
        # a script's import path starts at its own folder: let "my_envs:Env-v0" find the package my_envs
        # in the working directory, as `python -m` would
        sys.path.append(os.getcwd())
    try:
        # SAME_STEP: on the step an episode ends, obs is already the reset obs and the true final
        # observation is in infos["final_obs"] (see GYMNASIUM_1x.md).
        envs = gym.vector.SyncVectorEnv([make_env(args.env_id, env_kwargs, args.flatten_obs) for _ in range(args.num_envs)],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    except gym.error.UnregisteredEnv as error:  # no such id, namespace or version; Gymnasium suggests one
        fail(f"unknown --env-id {args.env_id}: {error}")
    except Exception as error:  # the env's module or constructor raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {args.env_id} with --env-kwargs {args.env_kwargs}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")
    return envs


def check_spaces(args: Args, obs_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, with one line saying what fits instead, spaces this script cannot learn from."""
    if isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
        fail(f"reinforce.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"reinforce.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        fail(f"reinforce.py needs Box observations and Discrete or Box actions; {args.env_id} has {obs_space} "
             f"observations and {action_space} actions. Try q_learning.py.")


# ---------------------------------------------------------------------------------------- Networks
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (the PPO implementation-details init)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_size: int, hidden: int, out_size: int, out_std: float) -> nn.Sequential:
    return nn.Sequential(layer_init(nn.Linear(in_size, hidden)), nn.Tanh(),
                         layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
                         layer_init(nn.Linear(hidden, out_size), std=out_std))


class Policy(nn.Module):
    """pi(a|s): Categorical over logits for Discrete actions, diagonal Gaussian for Box actions."""

    def __init__(self, obs_size: int, action_space: gym.Space, hidden: int):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out_size = action_space.n if self.discrete else int(np.prod(action_space.shape))
        # A small last layer starts the policy close to uniform (or zero-mean).
        self.net = mlp(obs_size, hidden, out_size, out_std=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(out_size))  # state-independent

    def distribution(self, obs: torch.Tensor):
        out = self.net(obs)
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp())

    def log_prob_and_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        dist = self.distribution(obs)
        if self.discrete:
            return dist.log_prob(actions), dist.entropy()
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)  # independent action dims

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        return out.argmax(-1) if self.discrete else out


# ---------------------------------------------------------------------------------------- Math
def compute_discounted_returns(rewards: torch.Tensor, bootstrap_values: torch.Tensor, valid: torch.Tensor,
                               gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_t+1 inside an episode; at its last step G = r + gamma * bootstrap, where
    bootstrap is b(final obs) for a truncated episode and 0 for a terminated one.

    All inputs are (num_steps, num_envs) with one episode per column; `valid` is 1 while the
    column's episode runs and 0 on the idle steps after it ended. Returns (num_steps, num_envs)."""
    returns = torch.zeros_like(rewards)
    next_return = torch.zeros_like(rewards[0])
    next_valid = torch.zeros_like(valid[0])
    for t in reversed(range(rewards.shape[0])):
        returns[t] = valid[t] * (rewards[t] + gamma * (next_valid * next_return + bootstrap_values[t]))
        next_return, next_valid = returns[t], valid[t]
    return returns


def random_states(envs: gym.vector.VectorEnv) -> dict:
    """Every random stream the run draws from, for a checkpoint (actions draw from torch's global generator)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "action_space": copy.deepcopy(envs.action_space.np_random.bit_generator.state)}


def set_random_states(states: dict, envs: gym.vector.VectorEnv) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    envs.action_space.np_random.bit_generator.state = states["action_space"]


def evaluate(policy: Policy, args: Args, run_dir: str, device: torch.device) -> list:
    """Deterministic episodes (argmax, or the Gaussian mean clipped to the bounds) in a fresh env
    seeded apart from training; returns their returns."""
    env = make_env(args.env_id, json.loads(args.env_kwargs), args.flatten_obs,
                   render_mode="rgb_array" if args.capture_video else None)()
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            with torch.inference_mode():
                action = policy.deterministic_action(torch.as_tensor(obs, dtype=torch.float32, device=device).flatten())
            action = action.cpu().numpy()
            if not policy.discrete:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


# ---------------------------------------------------------------------------------------- Checkpoints
# What a resumed run may change: where and how often it checkpoints, logging, the device, the video.
# A run that started from a saved model (--model-path) resumes without it: --resume refuses the two together,
# and the checkpoint holds the weights reached since.
ARGS_A_RESUME_MAY_CHANGE = {"resume", "checkpoint_every", "checkpoint_dir", "track", "tensorboard", "wandb_project_name",
                            "wandb_entity", "model_path", "capture_video", "save_model", "cuda"}
CHECKPOINTS_KEPT = 2  # the latest two: a spare, should the newest be lost with its disk


def capture_envs(envs: gym.vector.VectorEnv) -> list:
    """Each sub-env's state: the pickled env where it pickles its state (classic control, most pure-Python
    envs), else how its episode began and the actions since (see EpisodeRecorder): Gymnasium's EzPickle
    envs (MuJoCo, Box2D) pickle their constructor arguments only."""
    return [("pickle", pickle.dumps(env)) if not isinstance(env.unwrapped, gym.utils.EzPickle)
            else ("replay", (env.reset_from, list(env.actions_since_reset))) for env in envs.unwrapped.envs]


def restore_envs(envs: gym.vector.VectorEnv, states: list, obs: np.ndarray) -> None:
    """The sub-envs as captured: unpickled, or reset as their episode began and stepped through its
    actions again. The env is deterministic given its random state and the actions (MuJoCo and Box2D
    are), so this rebuilds its state bitwise; the observation it ends on must be the checkpoint's."""
    for i, (kind, state) in enumerate(states):
        if kind == "pickle":
            envs.unwrapped.envs[i] = pickle.loads(state)
            continue
        env, ((seed, rng_state, options), actions) = envs.unwrapped.envs[i], state
        env.unwrapped.np_random.bit_generator.state = rng_state
        observation, _ = env.reset(seed=seed, options=options)
        for action in actions:
            observation = env.step(action)[0]
        if not np.array_equal(np.asarray(observation).reshape(obs[i].shape), obs[i]):
            fail(f"--resume: replaying {env.spec.id}'s episode does not reach the checkpoint's observation "
                 f"(does the env draw randomness outside its np_random?); it cannot resume")


def next_checkpoint(global_step: int, checkpoint_every: int) -> int:
    """The first multiple of checkpoint_every past global_step (0 when checkpoints are off)."""
    return (global_step // checkpoint_every + 1) * checkpoint_every if checkpoint_every else 0


def write_checkpoint(checkpoint: dict, directory: str, global_step: int) -> str:
    """Atomically: a temporary file, synced, then renamed over, so a kill mid-write leaves the previous
    checkpoint whole. Keeps the latest CHECKPOINTS_KEPT."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"checkpoint_{global_step:012d}.pt")  # zero-padded: names sort by step
    with open(path + ".tmp", "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(path + ".tmp", path)
    for old in sorted(glob.glob(os.path.join(directory, "checkpoint_*.pt")))[:-CHECKPOINTS_KEPT]:
        os.remove(old)
    return path


def load_checkpoint(args: Args) -> dict:
    """The checkpoint to resume, refused in one line when it is unreadable, another script's, or made
    with other arguments (beyond ARGS_A_RESUME_MAY_CHANGE)."""
    try:
        # our own file holds numpy and python random states besides tensors: not weights only
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=False)
        saved_args, script = checkpoint["args"], checkpoint["script"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        fail(f"--resume {args.resume} is not a readable checkpoint (corrupt or truncated?): {str(error).splitlines()[0]}")
    if script != "reinforce.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of reinforce.py")
    changed = [f"--{name.replace('_', '-')} {saved_args.get(name)} (now {value})" for name, value in vars(args).items()
               if name not in ARGS_A_RESUME_MAY_CHANGE and saved_args.get(name) != value]
    if changed:
        fail(f"--resume needs the run's own arguments; the checkpoint was made with {', '.join(changed)}")
    return checkpoint


# ---------------------------------------------------------------------------------------- Logging
class FigureLog:
    """Sends the run's figures to Weights & Biases (--track) and/or TensorBoard (--tensorboard); both
    are imported only when asked for (they are slow to import and optional)."""

    def __init__(self, args: Args, run_name: str, run_dir: str, resumed: Optional[dict] = None):
        self.wandb = self.writer = None
        if args.track:
            import wandb

            # a resumed run continues its W&B run
            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, name=run_name, config=vars(args),
                       dir=run_dir, id=resumed and resumed["wandb_run_id"], resume="allow" if resumed else None)
            self.wandb = wandb
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # the arguments are in summary.json beside it; a resumed run drops what was logged after its checkpoint
            self.writer = SummaryWriter(run_dir, purge_step=resumed and resumed["global_step"])
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
    # A negative step or clip climbs the loss; 0 learns nothing
    if not 0 < args.learning_rate < np.inf or not 0 < args.baseline_learning_rate < np.inf or args.max_grad_norm <= 0:
        fail(f"--learning-rate and --baseline-learning-rate must be > 0 and finite, --max-grad-norm > 0; "
             f"got {args.learning_rate}, {args.baseline_learning_rate}, {args.max_grad_norm}")
    for name in ("num_envs", "eval_episodes", "hidden_size"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.total_timesteps < 0:
        fail(f"--total-timesteps must be >= 0 (0 only evaluates); got {args.total_timesteps}")
    if not 0.0 <= args.gamma <= 1.0:
        fail(f"--gamma must be in [0, 1]; got {args.gamma}")
    # a negative coefficient turns its term around (entropy descent)
    if args.ent_coef < 0:
        fail(f"--ent-coef must be >= 0; got {args.ent_coef}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 (0: no checkpoints); got {args.checkpoint_every}")
    if args.resume is not None and (not os.path.isfile(args.resume) or args.model_path is not None):
        fail(f"--resume {args.resume} must be a checkpoint file, and not combined with --model-path")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"sutton_barto_reward\": true}}'; got {args.env_kwargs!r}")


def warn_if_env_differs(saved_args: dict, args: Args) -> None:
    """A model is evaluated (or trained on) in the env it is loaded into. Another env id or other env
    kwargs with the same spaces are allowed (a robustness check is a reason to want it) but said
    aloud, since the returns are then not those of the env the model learned in."""
    saved = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved != current:
        print(f"warning: --model-path was trained in {saved[0]} with env kwargs {saved[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)


def train(args: Args) -> dict:
    check_args(args)
    checkpoint = load_checkpoint(args) if args.resume is not None else None
    env_kwargs = json.loads(args.env_kwargs)  # a JSON object: check_args made sure
    envs = make_training_envs(args, env_kwargs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    check_spaces(args, obs_space, action_space)
    discrete = isinstance(action_space, gym.spaces.Discrete)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_size = int(np.prod(obs_space.shape))
    policy = Policy(obs_size, action_space, args.hidden_size).to(device)
    baseline = mlp(obs_size, args.hidden_size, 1, out_std=1.0).to(device)  # b(s) ~ v_pi(s)
    policy_optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate)
    baseline_optimizer = torch.optim.Adam(baseline.parameters(), lr=args.baseline_learning_rate)
    # everything with a state_dict, by name: a checkpoint saves and restores them as one
    learner = {"policy": policy, "baseline": baseline, "policy_optimizer": policy_optimizer,
               "baseline_optimizer": baseline_optimizer}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            policy.load_state_dict(saved["policy"])
            baseline.load_state_dict(saved["baseline"])
        except (RuntimeError, KeyError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)

    # "package.module:Env-v0" and "Namespace/Env-v0" make one directory name, not a path
    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = checkpoint["run_dir"] if checkpoint else os.path.join("runs", run_name)  # a resumed run goes on in its own
    run_name = os.path.basename(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint_dir = args.checkpoint_dir or os.path.join(run_dir, "checkpoints")
    figure_log = FigureLog(args, run_name, run_dir, resumed=checkpoint)
    episodes_path = os.path.join(run_dir, "episodes.csv")
    episodes_file = open(episodes_path, "w", newline="")
    episodes_csv = csv.writer(episodes_file)
    if checkpoint is None:
        episodes_csv.writerow(["global_step", "episode_return", "episode_length", "wall_time"])
    else:  # the rows up to the checkpoint, and none that the stopped run wrote after it
        episodes_file.write(checkpoint["episodes_csv"])

    envs.action_space.seed(args.seed)
    episodic_returns = []
    global_step, iteration = 0, 0
    start_time = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written (after an iteration's update)
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        # the next iteration resets every env from its random state: restore that (and the rest of the env)
        restore_envs(envs, checkpoint["envs"], checkpoint["obs"])
        set_random_states(checkpoint["random"], envs)
        global_step, iteration = checkpoint["global_step"], checkpoint["iteration"]
        episodic_returns = checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    last_print = time.time()
    try:
        while global_step < args.total_timesteps:
            iteration += 1
            # every env starts a fresh episode under the current policy (seeded once, then streams go on)
            next_obs, _ = envs.reset(seed=args.seed if iteration == 1 else None)
            # ---- play one whole episode in every env; lists grow to (num_steps, num_envs, ...)
            obs, actions, rewards, valid, bootstrap_values = [], [], [], [], []
            running = torch.ones(args.num_envs, device=device)  # 1 until the env's episode ends
            while bool(running.any()):
                obs_t = torch.as_tensor(next_obs, dtype=torch.float32, device=device).reshape(args.num_envs, -1)
                with torch.inference_mode():
                    action = policy.distribution(obs_t).sample()
                env_action = action.cpu().numpy()
                if not discrete:  # clip only what the env sees; the unclipped sample keeps its log-prob
                    env_action = np.clip(env_action, action_space.low, action_space.high)
                next_obs, reward, terminations, truncations, infos = envs.step(env_action)
                global_step += args.num_envs
                bootstrap = torch.zeros(args.num_envs, device=device)
                truncated_only = np.flatnonzero(truncations & ~terminations)  # a termination at the limit is an end
                if args.baseline and len(truncated_only):  # bootstrap a time limit from b(true final obs)
                    final_obs = np.stack([infos["final_obs"][i] for i in truncated_only])
                    with torch.inference_mode():
                        values = baseline(torch.as_tensor(final_obs, dtype=torch.float32, device=device)
                                          .reshape(len(final_obs), -1)).squeeze(-1)
                    bootstrap[torch.as_tensor(truncated_only, device=device)] = values
                obs.append(obs_t)
                actions.append(action)
                rewards.append(torch.as_tensor(reward, dtype=torch.float32, device=device))
                valid.append(running.clone())
                bootstrap_values.append(bootstrap * running)
                running = running * torch.as_tensor(~(terminations | truncations), dtype=torch.float32, device=device)
            obs, actions = torch.stack(obs), torch.stack(actions)  # (num_steps, num_envs, ...)
            rewards, valid, bootstrap_values = torch.stack(rewards), torch.stack(valid), torch.stack(bootstrap_values)

            # ---- log the finished episodes (one per env)
            wall_time = time.time() - start_time
            for episode_return, episode_length in zip((rewards * valid).sum(0).tolist(), valid.sum(0).tolist()):
                episodes_csv.writerow([global_step, episode_return, int(episode_length), f"{wall_time:.3f}"])
                episodic_returns.append(episode_return)
            episodes_file.flush()

            # ---- policy gradient (Eq. 13.8 with a baseline: weight = G_t - b(s_t))
            returns = compute_discounted_returns(rewards, bootstrap_values, valid, args.gamma)
            mask = valid.bool()  # (num_steps, num_envs) -> flattened batches of valid steps
            b_obs, b_actions, b_returns = obs[mask], actions[mask], returns[mask]
            weights = b_returns
            if args.baseline:
                b_values = baseline(b_obs).squeeze(-1)
                v_loss = 0.5 * ((b_values - b_returns) ** 2).mean()
                baseline_optimizer.zero_grad()
                v_loss.backward()
                nn.utils.clip_grad_norm_(baseline.parameters(), args.max_grad_norm)
                baseline_optimizer.step()
                weights = b_returns - b_values.detach()
            if args.normalize_returns and len(weights) > 1:
                weights = (weights - weights.mean()) / (weights.std() + 1e-8)
            log_probs, entropy = policy.log_prob_and_entropy(b_obs, b_actions)
            pg_loss = -(log_probs * weights).mean()
            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss
            if not torch.isfinite(loss):
                fail(f"the policy loss became {loss.item()} at step {global_step}")
            policy_optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
            policy_optimizer.step()

            sps = global_step / max(wall_time, 1e-9)
            if figure_log.on:
                figure_log.log({"charts/episodic_return": float(np.mean(episodic_returns[-args.num_envs:])),
                                "charts/episodic_length": valid.sum(0).mean().item(),
                                "losses/pg_loss": pg_loss.item(), "losses/entropy": entropy_loss.item(),
                                "losses/v_loss": v_loss.item() if args.baseline else 0.0,
                                "charts/learning_rate": args.learning_rate, "charts/SPS": sps}, step=global_step)

            # ---- checkpoint when one is due: what carries over to the next iteration (its episodes start afresh)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "reinforce.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "iteration": iteration, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "random": random_states(envs), "envs": capture_envs(envs), "obs": next_obs,
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                eta = int(max(args.total_timesteps - global_step, 0) / sps)
                print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]):.1f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"policy": policy.state_dict(), "baseline": baseline.state_dict(),
                    "policy_optimizer": policy_optimizer.state_dict(),
                    "baseline_optimizer": baseline_optimizer.state_dict(),
                    "args": vars(args), "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(policy, args, run_dir, device)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__,
                            "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/return_mean": summary["eval_return_mean"], "eval/return_std": summary["eval_return_std"]},
                   step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS) | deterministic evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
