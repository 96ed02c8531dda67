"""Soft Actor-Critic (Haarnoja et al. 2018a, 2018b) for continuous actions.

Learn a stochastic policy that maximises return plus entropy, off-policy from a replay buffer. Two Q
critics regress on a soft TD target built from the smaller of two slowly moving target critics (Eq. 3
and 5 of 2018b); the actor, a tanh-squashed Gaussian, minimises alpha * log pi(a|s) - min Q(s, a)
(Eq. 7), and the temperature alpha is tuned so the policy's entropy stays near -dim(A) (Eq. 18).
Papers: https://arxiv.org/abs/1801.01290, https://arxiv.org/abs/1812.05905.

Spaces: Box observations, Box actions with finite bounds. Defaults equal CleanRL's
sac_continuous_action.py (which reproduce the published MuJoCo results), so the two compare side by
side. With no --total-timesteps the budget is the env's entry in DEFAULT_BUDGETS (Pendulum-v1 solves
in 20k steps, about 100 s here) and 1M steps, the published MuJoCo budget, for any other env.
The buffer stores the true final observation of a truncated episode and `terminated` (never `done`),
so a time limit is bootstrapped and a real end is not.

    python algorithms/sac.py --env-id Pendulum-v1                  # solves in 20k steps
    python algorithms/sac.py --env-id HalfCheetah-v5               # 1M steps
    python algorithms/sac.py --env-id Pendulum-v1 --no-autotune --alpha 0.1
    python algorithms/sac.py --env-id LunarLander-v3 --env-kwargs '{"continuous": true}'
    python algorithms/sac.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/sac.py --model-path runs/.../sac.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 50000 --checkpoint-dir ~/checkpoints` writes everything the run
needs to go on (networks, optimizers, the used part of the replay buffer, every random state, counters,
the episodes so far); rerunning the same command with `--resume PATH` continues it in its run
directory, bitwise on CPU as if it had never stopped. An env whose state pickles (classic control, most
pure-Python envs) is saved as it is; MuJoCo and Box2D envs pickle only their constructor arguments, so
their checkpoint holds how the current episode began and its actions, and resuming replays them.
"""

import copy
import csv
import glob
import json
import math
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
import torch.nn.functional as F
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
LOG_EVERY_UPDATES = 100  # losses go to W&B (and are checked for NaN) every this many updates
# Budgets used when --total-timesteps is not given: small envs get what solves them, the rest the
# published 1M-step MuJoCo budget.
DEFAULT_BUDGETS = {"Pendulum-v1": 20_000}
DEFAULT_BUDGET = 1_000_000
# The actor's log-std is squashed into [LOG_STD_MIN, LOG_STD_MAX] (as in CleanRL and the authors' code):
# std in [0.007, 7.4], wide enough to explore, bounded so log-probs stay finite.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


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
    env_id: str = "Hopper-v5"
    """the Gymnasium environment id (Box observations, Box actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"continuous": true}'"""
    flatten_obs: bool = False
    """flatten Dict or Tuple observations into one vector (gymnasium.wrappers.FlattenObservation)"""
    total_timesteps: Optional[int] = None
    """environment steps of training; None: 20k for Pendulum-v1, 1M for any other env"""
    num_envs: int = 1
    """parallel environments (one gradient step per environment step either way)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (transitions)"""
    gamma: float = 0.99
    """the discount factor"""
    tau: float = 0.005
    """target network update rate (Polyak averaging)"""
    batch_size: int = 256
    """transitions per gradient step"""
    learning_starts: int = 5_000
    """environment steps of uniformly random actions before the first gradient step"""
    policy_lr: float = 3e-4
    """Adam step size of the actor"""
    q_lr: float = 1e-3
    """Adam step size of the critics and of the temperature"""
    policy_frequency: int = 2
    """critic updates per actor update burst; each burst is policy_frequency actor updates (TD3-style delay)"""
    target_network_frequency: int = 1
    """critic updates between target network updates"""
    alpha: float = 0.2
    """entropy temperature (the starting value when --autotune is on)"""
    autotune: bool = True
    """tune alpha towards the target entropy -dim(A) (Eq. 18 of Haarnoja et al. 2018b)"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """units of the hidden ReLU layers of the actor and of each critic"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end (the action is the squashed mean)"""


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
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def check_spaces(args: Args, obs_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, with one line saying what fits instead, spaces this script cannot learn from."""
    if isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
        fail(f"sac.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"sac.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Box):
        fail(f"sac.py needs Box observations and a continuous (Box) action space; {args.env_id} has {obs_space} "
             f"observations and {action_space} actions. Try " + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete)
                                                                else "dqn.py or ppo.py."))
    if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
        fail(f"sac.py needs finite action bounds to squash into; {args.env_id} has {action_space}. Try reinforce.py.")


# ---------------------------------------------------------------------------------------- Networks
def mlp(in_size: int, hidden_sizes: tuple, out_size: int) -> nn.Sequential:
    layers, width = [], in_size
    for size in hidden_sizes:
        # in place: the ReLU overwrites the Linear's fresh output (whose backward does not need it) instead of
        # writing a new 256 x 256 batch to memory; bitwise the same, ~7% of an update on CPU (benchmarks.md)
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, out_size))


class SoftQNetwork(nn.Module):
    """(obs (batch, obs_size), action (batch, action_size)) -> Q(s, a) (batch,)."""

    def __init__(self, obs_size: int, action_size: int, hidden_sizes: tuple):
        super().__init__()
        self.net = mlp(obs_size + action_size, hidden_sizes, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=1)).squeeze(1)


class Actor(nn.Module):
    """obs (batch, obs_size) -> a tanh-squashed Gaussian over actions, rescaled to the env's bounds."""

    def __init__(self, obs_size: int, action_space: gym.spaces.Box, hidden_sizes: tuple):
        super().__init__()
        action_size = int(np.prod(action_space.shape))
        self.net = mlp(obs_size, hidden_sizes, 2 * action_size)  # mean and log-std of each action dimension
        # a = scale * tanh(u) + bias maps tanh's (-1, 1) onto [low, high]; buffers move and save with the model
        self.register_buffer("action_scale", torch.tensor((action_space.high - action_space.low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((action_space.high + action_space.low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple:
        mean, log_std = self.net(obs).chunk(2, dim=1)  # each (batch, action_size)
        # squash the raw log-std smoothly into [LOG_STD_MIN, LOG_STD_MAX] (a hard clamp would kill its gradient)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple:
        """A reparameterised sample (Eq. 11 of 2018b): actions (batch, action_size) in the env's bounds
        and their log-probabilities (batch,)."""
        mean, log_std = self(obs)
        gaussian_sample = mean + log_std.exp() * torch.randn_like(mean)  # u = mean + std * noise
        actions = torch.tanh(gaussian_sample) * self.action_scale + self.action_bias
        return actions, squashed_gaussian_log_prob(gaussian_sample, mean, log_std, self.action_scale)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The action used for evaluation: the squashed mean."""
        mean, _ = self(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


# ---------------------------------------------------------------------------------------- Replay buffer
class ReplayBuffer:
    """Circular storage in preallocated tensors; one index tensor samples a batch."""

    STORED = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, capacity: int, obs_size: int, action_size: int, device: torch.device):
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs = torch.zeros((capacity, obs_size), dtype=torch.float32, device=device)
        self.next_obs = torch.zeros((capacity, obs_size), dtype=torch.float32, device=device)
        self.actions = torch.zeros((capacity, action_size), dtype=torch.float32, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.terminations = torch.zeros(capacity, dtype=torch.float32, device=device)

    def add(self, obs, next_obs, actions, rewards, terminations) -> None:
        """Store one vector step: numpy arrays straight from the env, each (num_envs, ...), cast to the
        storage's dtype (MuJoCo's float64 obs, bool terminations), wrapping at capacity."""
        n = len(actions)
        if self.pos + n > self.capacity:  # wrap: the part that fits at the end, then the rest at the start
            fit = self.capacity - self.pos
            self.add(obs[:fit], next_obs[:fit], actions[:fit], rewards[:fit], terminations[:fit])
            self.add(obs[fit:], next_obs[fit:], actions[fit:], rewards[fit:], terminations[fit:])
            return
        rows = slice(self.pos, self.pos + n)  # slice writes cast dtype and device as they copy
        self.obs[rows] = torch.from_numpy(obs).reshape(n, -1)
        self.next_obs[rows] = torch.from_numpy(next_obs).reshape(n, -1)
        self.actions[rows] = torch.from_numpy(actions).reshape(n, -1)
        self.rewards[rows] = torch.from_numpy(rewards)
        self.terminations[rows] = torch.from_numpy(terminations)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict:
        """For a checkpoint: the used rows only, copied (torch.save of a view writes its whole storage)."""
        return {"pos": self.pos, "size": self.size,
                **{name: getattr(self, name)[:self.size].to("cpu", copy=True) for name in self.STORED}}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        for name in self.STORED:
            getattr(self, name)[:self.size] = state[name]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple:
        index = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        return (self.obs[index], self.actions[index], self.rewards[index], self.next_obs[index],
                self.terminations[index])


# ---------------------------------------------------------------------------------------- Math
def squashed_gaussian_log_prob(gaussian_sample, mean, log_std, action_scale) -> torch.Tensor:
    """log pi(a|s) of a = scale * tanh(u) + bias with u ~ N(mean, std), by the change of variables
    (Eq. 26 of Haarnoja et al. 2018b, plus the affine rescaling):
        log pi(a|s) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) - log scale_i ].
    Shapes: gaussian_sample, mean, log_std (batch, action_size); action_scale (action_size,) -> (batch,)."""
    # validate_args=False: the argument checks cost a few tensor passes per call and the inputs are ours
    gaussian_log_prob = torch.distributions.Normal(mean, log_std.exp(), validate_args=False).log_prob(gaussian_sample)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact and finite even where tanh(u) rounds to +-1
    # (CleanRL's log(1 - tanh(u)^2 + 1e-6) is biased there).
    log_tanh_derivative = 2.0 * (math.log(2.0) - gaussian_sample - F.softplus(-2.0 * gaussian_sample))
    return (gaussian_log_prob - log_tanh_derivative - torch.log(action_scale)).sum(dim=1)


def soft_td_target(rewards, terminations, next_q1_target, next_q2_target, next_log_probs, alpha, gamma: float):
    """y = r + gamma * (1 - terminated) * (min_j Q_target_j(s', a') - alpha * log pi(a'|s')), a' ~ pi(.|s')
    (Eq. 3 and 5 of Haarnoja et al. 2018b; the min of two critics as in TD3). All tensors (batch,)."""
    soft_value = torch.min(next_q1_target, next_q2_target) - alpha * next_log_probs
    return rewards + gamma * (1.0 - terminations) * soft_value


def temperature_loss(log_alpha, log_probs, target_entropy: float) -> torch.Tensor:
    """J(alpha) = E[-alpha * (log pi(a|s) + target_entropy)] (Eq. 18 of Haarnoja et al. 2018b): descending it
    raises alpha while the policy's entropy -log pi is below the target and lowers it above.
    log_alpha (1,) is the learned parameter; log_probs (batch,) come detached from the actor step."""
    return (-log_alpha.exp() * (log_probs + target_entropy)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- tau * online + (1 - tau) * target."""
    for target_param, param in zip(target.parameters(), online.parameters()):
        target_param.lerp_(param, tau)


def random_states(envs: gym.vector.VectorEnv, sample_generator: torch.Generator) -> dict:
    """Every random stream the run draws from, for a checkpoint."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "sample_generator": sample_generator.get_state(), "device": sample_generator.device.type,
            "action_space": copy.deepcopy(envs.action_space.np_random.bit_generator.state)}


def set_random_states(states: dict, envs: gym.vector.VectorEnv, sample_generator: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    made_on = states.get("device")  # checkpoints written before it was recorded: unchecked
    if made_on is not None and made_on != sample_generator.device.type:  # its generator state is another device's
        fail(f"--resume: the checkpoint was made on the {made_on.upper()}, this run is on the "
             f"{sample_generator.device.type.upper()}: resume on the device the run started on (--cuda / --no-cuda)")
    sample_generator.set_state(states["sample_generator"])
    envs.action_space.np_random.bit_generator.state = states["action_space"]


def evaluate(actor: Actor, args: Args, run_dir: str, device: torch.device) -> list:
    """Deterministic episodes (squashed mean action) in a fresh env seeded apart from training."""
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
                action = actor.deterministic(torch.as_tensor(obs, dtype=torch.float32, device=device).reshape(1, -1))
            obs, reward, terminated, truncated, _ = env.step(action[0].cpu().numpy())
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
CHECKPOINTS_KEPT = 2  # a 1M-step Hopper checkpoint holds ≈ 100 MB of replay buffer: keep the latest two


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
    if script != "sac.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of sac.py")
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
def budget(args: Args) -> int:
    """--total-timesteps, or the env's entry in DEFAULT_BUDGETS when it is not given."""
    return args.total_timesteps if args.total_timesteps is not None else DEFAULT_BUDGETS.get(args.env_id, DEFAULT_BUDGET)


def check_args(args: Args) -> None:
    """Arguments that cannot work: one line naming the argument and its allowed range, exit 2."""
    for name, value in vars(args).items():  # NaN passes a check such as "x <= 0": every comparison with NaN is False
        if isinstance(value, float) and np.isnan(value):
            fail(f"--{name.replace('_', '-')} must be a number; got nan")
    if not 0 <= args.seed <= 2**32 - 1:  # np.random.seed's range, one range of seeds for every script
        fail(f"--seed must be in [0, 2**32 - 1]; got {args.seed}")
    if not 0 < args.policy_lr < np.inf or not 0 < args.q_lr < np.inf:  # a negative step climbs the loss; 0 learns nothing
        fail(f"--policy-lr and --q-lr must be > 0 and finite; got {args.policy_lr}, {args.q_lr}")
    total_timesteps = budget(args)
    for name in ("num_envs", "eval_episodes", "buffer_size", "batch_size", "policy_frequency",
                 "target_network_frequency"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if total_timesteps < 0:
        fail(f"--total-timesteps must be >= 0 (0 only evaluates); got {total_timesteps}")
    if total_timesteps > 0 and not 0 <= args.learning_starts < total_timesteps:
        fail(f"--learning-starts must be in [0, total_timesteps={total_timesteps}); got {args.learning_starts}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size ({args.batch_size}) must not exceed --buffer-size ({args.buffer_size})")
    if not 0.0 < args.tau <= 1.0 or not 0.0 <= args.gamma <= 1.0 or args.alpha < 0.0:
        fail(f"--tau must be in (0, 1], --gamma in [0, 1] and --alpha >= 0; got {args.tau}, {args.gamma}, {args.alpha}")
    if args.autotune and args.alpha <= 0.0:
        fail(f"--alpha must be > 0 with --autotune (it is tuned in log space); got {args.alpha}")
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
        fail(f"--env-kwargs must be a JSON object such as '{{\"continuous\": true}}'; got {args.env_kwargs!r}")


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
    total_timesteps = budget(args)
    env_kwargs = json.loads(args.env_kwargs)  # a JSON object: check_args made sure
    envs = make_training_envs(args, env_kwargs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    check_spaces(args, obs_space, action_space)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_size, action_size = int(np.prod(obs_space.shape)), int(np.prod(action_space.shape))
    actor = Actor(obs_size, action_space, args.hidden_sizes).to(device)
    qf1 = SoftQNetwork(obs_size, action_size, args.hidden_sizes).to(device)
    qf2 = SoftQNetwork(obs_size, action_size, args.hidden_sizes).to(device)
    qf1_target = SoftQNetwork(obs_size, action_size, args.hidden_sizes).to(device)
    qf2_target = SoftQNetwork(obs_size, action_size, args.hidden_sizes).to(device)
    # fused: one kernel for the whole Adam step (a few % of an update on CPU, free)
    q_optimizer = torch.optim.Adam([*qf1.parameters(), *qf2.parameters()], lr=args.q_lr, fused=True)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True)
    # alpha is learned as log(alpha) so it stays positive; target entropy -dim(A) (Sec. 5 of 2018b)
    target_entropy = -float(action_size)
    log_alpha = torch.tensor([math.log(args.alpha) if args.autotune else 0.0], device=device, requires_grad=True)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr)
    # everything with a state_dict, by name: a checkpoint saves and restores them as one
    learner = {"actor": actor, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target,
               "q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer, "alpha_optimizer": alpha_optimizer}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            for bound in ("action_scale", "action_bias"):  # the critics' actions are in the saved env's units
                saved_bound, env_bound = saved["actor"][bound].to(device), getattr(actor, bound)
                if saved_bound.shape == env_bound.shape and not torch.equal(saved_bound, env_bound):
                    fail(f"--model-path {args.model_path} was trained with other action bounds than {args.env_id}'s "
                         f"{envs.single_action_space}")
            for name, module in (("actor", actor), ("qf1", qf1), ("qf2", qf2)):
                module.load_state_dict(saved[name])
            log_alpha.data.copy_(saved["log_alpha"])
        except (RuntimeError, KeyError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    # alpha stays a tensor on the device: reading it as a float would sync with the device every update
    alpha = log_alpha.detach().exp() if args.autotune else torch.tensor(args.alpha, device=device)
    # a buffer never needs more rows than the run has steps (Pendulum's 20k rows instead of 1M)
    rb = ReplayBuffer(min(args.buffer_size, total_timesteps + args.num_envs), obs_size, action_size, device)
    sample_generator = torch.Generator(device=device).manual_seed(args.seed)  # replay sampling

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
    obs, _ = envs.reset(seed=args.seed)  # (num_envs, *obs_shape), numpy
    episodic_returns = []
    global_step, updates = 0, 0
    learning_start_time, learning_start_step = None, 0  # for the SPS of the learning phase alone
    start_time = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        log_alpha.data.copy_(checkpoint["log_alpha"])
        alpha = log_alpha.detach().exp() if args.autotune else alpha
        rb.load_state_dict(checkpoint["replay_buffer"])
        restore_envs(envs, checkpoint["envs"], checkpoint["obs"])
        obs = checkpoint["obs"]
        envs.episode_returns[:], envs.episode_lengths[:] = checkpoint["episode_statistics"]
        set_random_states(checkpoint["random"], envs, sample_generator)
        global_step, updates, episodic_returns = checkpoint["global_step"], checkpoint["updates"], checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
        if checkpoint["learning"] is not None:
            learning_start_step, learning_start_time = checkpoint["learning"][0], time.time() - checkpoint["learning"][1]
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    last_print, last_print_step = time.time(), global_step
    actor_loss = alpha_loss = None  # until this process makes an actor step
    try:
        while global_step < total_timesteps:
            # ---- act: uniformly random during warm-up, then a sample of the policy (exploration)
            if global_step < args.learning_starts:
                actions = envs.action_space.sample()  # (num_envs, action_size)
            else:
                with torch.inference_mode():
                    actions, _ = actor.sample(torch.as_tensor(obs, dtype=torch.float32, device=device)
                                              .reshape(args.num_envs, -1))
                actions = actions.cpu().numpy()
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step += args.num_envs

            # ---- store; on an episode end next_obs is already the reset obs: store the true final one
            real_next_obs = next_obs.copy()
            if "_final_obs" in infos:
                for i in np.flatnonzero(infos["_final_obs"]):
                    real_next_obs[i] = infos["final_obs"][i]
            rb.add(obs, real_next_obs, actions, rewards, terminations)
            obs = next_obs

            if "_episode" in infos:
                wall_time = time.time() - start_time
                for i in np.flatnonzero(infos["_episode"]):
                    episode_return, episode_length = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
                    episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                    episodic_returns.append(episode_return)
                    if figure_log.on:
                        figure_log.log({"charts/episodic_return": episode_return,
                                        "charts/episodic_length": episode_length}, step=global_step)

            # ---- learn: one gradient step per environment step (whatever num_envs is)
            if global_step > args.learning_starts:
                if learning_start_time is None:
                    learning_start_time, learning_start_step = time.time(), global_step
                for _ in range(args.num_envs):
                    updates += 1
                    b_obs, b_actions, b_rewards, b_next_obs, b_terminations = rb.sample(args.batch_size, sample_generator)
                    with torch.no_grad():
                        next_actions, next_log_probs = actor.sample(b_next_obs)
                        td_targets = soft_td_target(b_rewards, b_terminations, qf1_target(b_next_obs, next_actions),
                                                    qf2_target(b_next_obs, next_actions), next_log_probs, alpha,
                                                    args.gamma)  # (batch,)
                    qf1_values, qf2_values = qf1(b_obs, b_actions), qf2(b_obs, b_actions)
                    qf1_loss, qf2_loss = F.mse_loss(qf1_values, td_targets), F.mse_loss(qf2_values, td_targets)
                    qf_loss = qf1_loss + qf2_loss  # Eq. 5, both critics in one step
                    q_optimizer.zero_grad()
                    qf_loss.backward()
                    q_optimizer.step()

                    if updates % args.policy_frequency == 0:  # delayed, then as many actor steps as were skipped
                        # The actor's loss backpropagates through the critics to the actions only: freezing
                        # the critics' weights skips their weight gradients (~15% of an update).
                        qf1.requires_grad_(False)
                        qf2.requires_grad_(False)
                        for _ in range(args.policy_frequency):
                            pi_actions, log_probs = actor.sample(b_obs)
                            min_q_pi = torch.min(qf1(b_obs, pi_actions), qf2(b_obs, pi_actions))
                            actor_loss = (alpha * log_probs - min_q_pi).mean()  # Eq. 7 (reparameterised, Eq. 11)
                            actor_optimizer.zero_grad()
                            actor_loss.backward()
                            actor_optimizer.step()
                            if args.autotune:
                                # the log-probs of the actor step are reused (as SB3 does), detached
                                alpha_loss = temperature_loss(log_alpha, log_probs.detach(), target_entropy)
                                alpha_optimizer.zero_grad()
                                alpha_loss.backward()
                                alpha_optimizer.step()
                                alpha = log_alpha.detach().exp()
                        qf1.requires_grad_(True)
                        qf2.requires_grad_(True)

                    if updates % args.target_network_frequency == 0:
                        soft_update(qf1_target, qf1, args.tau)
                        soft_update(qf2_target, qf2, args.tau)

                    if updates % LOG_EVERY_UPDATES == 0:
                        losses = {"losses/qf1_loss": qf1_loss.item(), "losses/qf2_loss": qf2_loss.item(),
                                  "losses/qf1_values": qf1_values.mean().item(), "losses/alpha": alpha.item()}
                        if actor_loss is not None:  # this process has made an actor step (a resumed one starts mid-count)
                            losses["losses/actor_loss"] = actor_loss.item()
                            if args.autotune:
                                losses["losses/alpha_loss"] = alpha_loss.item()
                        for name, value in losses.items():
                            if not math.isfinite(value):
                                fail(f"{name} became {value} at step {global_step}")
                        if figure_log.on:
                            figure_log.log({**losses, "charts/SPS": global_step / max(time.time() - start_time, 1e-9)},
                                           step=global_step)

            # ---- checkpoint when one is due (every env's state is saved: see capture_envs)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "sac.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "updates": updates, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learning": None if learning_start_time is None else
                    (learning_start_step, time.time() - learning_start_time),
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "log_alpha": log_alpha.detach().cpu(), "replay_buffer": rb.state_dict(),
                    "random": random_states(envs, sample_generator), "envs": capture_envs(envs), "obs": obs,
                    "episode_statistics": (envs.episode_returns.copy(), envs.episode_lengths.copy()),
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)

            if time.time() - last_print > PROGRESS_SECONDS:
                # the ETA uses the recent rate: the warm-up steps run many times faster than learning ones
                recent_sps = (global_step - last_print_step) / (time.time() - last_print)
                last_print, last_print_step = time.time(), global_step
                episodes_file.flush()
                sps = global_step / (last_print - start_time)
                eta = int(max(total_timesteps - global_step, 0) / max(recent_sps, 1e-9))
                print(f"step {global_step:,}/{total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | "
                      f"alpha {alpha.item():.3f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    end_time = time.time()
    wall_time = end_time - start_time
    sps = global_step / max(wall_time, 1e-9)
    # the learning phase alone (after the random warm-up): the figure that the update's cost decides
    learning_sps = ((global_step - learning_start_step) / max(end_time - learning_start_time, 1e-9)
                    if learning_start_time is not None else None)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"actor": actor.state_dict(), "qf1": qf1.state_dict(), "qf2": qf2.state_dict(),
                    "qf1_target": qf1_target.state_dict(), "qf2_target": qf2_target.state_dict(),
                    "log_alpha": log_alpha.detach(), "q_optimizer": q_optimizer.state_dict(),
                    "actor_optimizer": actor_optimizer.state_dict(), "alpha_optimizer": alpha_optimizer.state_dict(),
                    "args": vars(args), "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(actor, args, run_dir, device)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "learning_sps": learning_sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__,
                            "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"charts/SPS": sps, "eval/return_mean": summary["eval_return_mean"],
                    "eval/return_std": summary["eval_return_std"]}, step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS"
          + (f", {learning_sps:,.0f} while learning" if learning_sps is not None else "")
          + f") | deterministic evaluation {summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} "
          f"over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "learning_sps": learning_sps, "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
