"""Synchronous advantage actor-critic, A2C (Mnih et al. 2016, the synchronous variant).

num_envs environments step together for num_steps; each rollout gives one gradient step on
-log pi(a|s) * A + vf_coef * (V - R)^2 - ent_coef * H[pi], where R is the n-step return bootstrapped
from V at the rollout's end and A = R - V (or GAE with --gae-lambda < 1). Paper:
https://arxiv.org/abs/1602.01783. Defaults follow Stable-Baselines3's A2C and the RL Baselines3 Zoo's
CartPole settings: 8 envs x 5 steps, RMSprop (alpha 0.99, eps 1e-5) at 7e-4, as the paper used
RMSprop; --optimizer adam is there for comparison.

Optional observation normalisation and reward scaling (--norm-obs, --norm-reward; SB3's VecNormalize,
which the Zoo turns on for A2C on Acrobot and MountainCar), saved with the model when used.

Separate actor and critic networks (64-64 tanh each), as SB3's MlpPolicy: the paper shared a
trunk to save compute on Atari pixels, but on small vector observations a shared trunk lets the value
loss (scaled by vf_coef) pull the policy's features around. A time-limit truncation is bootstrapped
from V(true final obs); only a termination drops the bootstrap.

Spaces: Box (vector) observations, Discrete actions.

    python algorithms/a2c.py                                          # CartPole-v1, 500k steps
    python algorithms/a2c.py --env-id Acrobot-v1 --num-envs 16
    python algorithms/a2c.py --env-id LunarLander-v3 --gamma 0.995 --learning-rate 8.3e-4 --ent-coef 1e-5 \
        --norm-obs --norm-reward --total-timesteps 1000000          # greedy ≈ 215 (3 seeds)
    python algorithms/a2c.py --env-kwargs '{"sutton_barto_reward": true}'  # CartPole: -1 at the end, 0 before
    python algorithms/a2c.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/a2c.py --model-path runs/.../a2c.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 100000 --checkpoint-dir ~/checkpoints` writes, at the end of the
iteration that reaches each multiple, everything the run needs to go on (networks, optimizer, the
normalisation statistics, every random state, counters, the episodes so far; the rollout is refilled
every iteration, so it is not saved); rerunning the same command with `--resume PATH` continues it in
its run directory, bitwise on CPU as if it had never stopped. An env whose state pickles (classic
control, most pure-Python envs) is saved as it is; MuJoCo and Box2D envs pickle only their constructor
arguments, so their checkpoint holds how the current episode began and its actions, and resuming
replays them.
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
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
LOG_EVERY_ITERATIONS = 100  # losses go to W&B every this many updates (one update per 40 steps)
NORM_CLIP = 10.0  # normalised observations and scaled rewards are clipped to +-10 (as in SB3's VecNormalize)
NORM_EPSILON = 1e-8  # keeps the division by a running std finite


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
    """the Gymnasium environment id (Box observations, Discrete actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"sutton_barto_reward": true}'"""
    flatten_obs: bool = False
    """flatten Dict or Tuple observations into one vector (gymnasium.wrappers.FlattenObservation)"""
    total_timesteps: int = 500_000
    """environment steps of training"""
    learning_rate: float = 7e-4
    """optimizer step size"""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """RMSprop (alpha 0.99, eps 1e-5) as the paper and SB3, or Adam (eps 1e-5)"""
    num_envs: int = 8
    """parallel environments"""
    num_steps: int = 5
    """steps per env in each rollout (the n of the n-step return)"""
    anneal_lr: bool = False
    """anneal the learning rate linearly to 0 over training"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 1.0
    """the GAE lambda; 1.0 gives the paper's n-step returns"""
    norm_adv: bool = False
    """normalise advantages over each rollout"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """clip the global gradient norm"""
    norm_obs: bool = False
    """normalise observations by running mean and std, clip +-10 (SB3's VecNormalize)"""
    norm_reward: bool = False
    """divide rewards by the running std of the discounted return, clip +-10 (SB3's VecNormalize)"""
    eval_episodes: int = 10
    """greedy evaluation episodes at the end"""


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
        # observation is in infos["final_obs"] (see GYMNASIUM_1x.md). copy=False: reset and step return
        # the vector env's own observation array, which its next step overwrites, instead of a deepcopy
        # of it (26 of CartPole's 70 µs a step); the loop is done with it (stored, normalised) by then.
        envs = gym.vector.SyncVectorEnv([make_env(args.env_id, env_kwargs, args.flatten_obs) for _ in range(args.num_envs)],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, copy=False)
    except gym.error.UnregisteredEnv as error:  # no such id, namespace or version; Gymnasium suggests one
        fail(f"unknown --env-id {args.env_id}: {error}")
    except Exception as error:  # the env's module or constructor raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {args.env_id} with --env-kwargs {args.env_kwargs}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def check_spaces(args: Args, obs_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, with one line saying what fits instead, spaces this script cannot learn from."""
    if isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
        fail(f"a2c.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"a2c.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Discrete):
        fail(f"a2c.py needs Box observations and Discrete actions; {args.env_id} has {obs_space} observations "
             f"and {action_space} actions. Try " + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete)
                                                   else "reinforce.py."))


class RunningMeanStd:
    """Running mean and variance of a stream of batches, merged batch by batch (the parallel algorithm
    of Chan et al. 1979, as in SB3 and gymnasium), in float64 (as SB3)."""

    def __init__(self, shape: tuple = ()):
        self.mean, self.var = np.zeros(shape), np.ones(shape)
        self.count = 1e-4  # a tiny prior count so the first merge needs no special case (as SB3)

    def update(self, batch: np.ndarray) -> None:
        """batch: (n, *shape), n samples merged at once."""
        batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta, total = batch_mean - self.mean, self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        self.var = (self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * batch_count / total) / total
        self.count = total

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        return np.clip((batch - self.mean) / np.sqrt(self.var + NORM_EPSILON), -NORM_CLIP, NORM_CLIP)

    def state_dict(self) -> dict:  # tensors, so torch.load's safe (weights-only) mode reads them back
        return {"mean": torch.as_tensor(self.mean), "var": torch.as_tensor(self.var), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].numpy().copy(), state["var"].numpy().copy(), float(state["count"])


class RewardScaler:
    """Divide each reward by the running std of the discounted return (not of the reward) and clip it
    to +-10, as SB3's VecNormalize and gymnasium's NormalizeReward do. Each env's return accumulator
    restarts when its episode ends (terminated or truncated)."""

    def __init__(self, num_envs: int, gamma: float):
        self.gamma, self.returns, self.return_rms = gamma, np.zeros(num_envs), RunningMeanStd()

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self.return_rms.update(self.returns)
        self.returns[dones] = 0.0
        return np.clip(rewards / np.sqrt(self.return_rms.var + NORM_EPSILON), -NORM_CLIP, NORM_CLIP)

    def state_dict(self) -> dict:  # each env's return so far and the statistics, for a checkpoint
        return {"returns": torch.as_tensor(self.returns.copy()), "return_rms": self.return_rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].numpy().copy()
        self.return_rms.load_state_dict(state["return_rms"])


def network_view(raw_obs: np.ndarray, obs_rms: Optional[RunningMeanStd]) -> np.ndarray:
    """(n, obs_size) observations as the networks see them: normalised by obs_rms when given."""
    return raw_obs if obs_rms is None else obs_rms.normalize(raw_obs)


def network_input(raw_obs: np.ndarray, obs_rms: Optional[RunningMeanStd], device: torch.device) -> torch.Tensor:
    """network_view as the networks' float32 input tensor."""
    return torch.as_tensor(network_view(raw_obs, obs_rms), dtype=torch.float32, device=device)


# ---------------------------------------------------------------------------------------- Agent
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (as SB3's policies)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    """Separate actor (logits) and critic (V) networks, 64-64 tanh each."""

    def __init__(self, obs_size: int, n_actions: int):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        # A small last layer starts the policy close to uniform.
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return forward(self.critic, obs).squeeze(-1)

    def get_action_and_value(self, obs: torch.Tensor, action: Optional[torch.Tensor] = None):
        """Sample an action (or score a given one): action, log pi(a|s), entropy, V(s)."""
        log_probs, probs = categorical(forward(self.actor, obs))  # (batch, n_actions) each
        if action is None:
            action = sample(probs)
        logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs * probs).sum(-1)
        return action, logprob, entropy, self.get_value(obs)


def forward(network: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """network(x), calling each layer's forward directly: nn.Module's call machinery (hooks) costs more
    than a 64-wide layer's arithmetic, and the rollout pays it at every environment step."""
    for layer in network:
        x = layer.forward(x)
    return x


# ---------------------------------------------------------------------------------------- Math
def categorical(logits: torch.Tensor) -> tuple:
    """log pi(.|s) and pi(.|s) of the categorical policy, (batch, n_actions) each.

    The arithmetic of torch.distributions.Categorical written out, operation for operation (normalised
    logits, their softmax; sampling by torch.multinomial), so a run draws exactly the actions it drew
    with the distribution object, which cost more than the 64-wide network itself at every step."""
    log_probs = logits - logits.logsumexp(-1, keepdim=True)
    return log_probs, log_probs.softmax(-1)


def sample(probs: torch.Tensor) -> torch.Tensor:
    """One action per row of probs (batch, n_actions), as Categorical.sample draws it."""
    return torch.multinomial(probs, 1, replacement=True).squeeze(-1)


def compute_gae(rewards, values, next_values, terminations, dones, gamma: float, gae_lambda: float) -> np.ndarray:
    """Generalized advantage estimation (Eq. 11-16 of Schulman et al. 2016), all (num_steps, num_envs)
    numpy arrays (a step of this loop costs a fraction of the same torch calls on such small arrays).

    next_values[t] is V of the state after step t: V(s_t+1) inside an episode, V(true final obs)
    where step t was truncated. delta_t = r_t + gamma * (1 - terminated_t) * next_values[t] - V(s_t);
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_t+1, so an episode end (either kind) stops the
    sum and only a termination drops the bootstrap. gae_lambda = 1 gives n-step returns minus V."""
    advantages = np.zeros_like(rewards)
    next_advantage = np.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * next_values[t] - values[t]
        next_advantage = delta + gamma * gae_lambda * (1.0 - dones[t]) * next_advantage
        advantages[t] = next_advantage
    return advantages


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


def evaluate(agent: Agent, obs_rms: Optional[RunningMeanStd], args: Args, run_dir: str, device: torch.device) -> list:
    """Greedy (argmax) episodes in a fresh env seeded apart from training, observations normalised by the
    training statistics (frozen) when obs_rms is given; returns their returns."""
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
                logits = agent.actor(network_input(obs.reshape(1, -1), obs_rms, device))
            obs, reward, terminated, truncated, _ = env.step(int(logits.argmax()))
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
    if script != "a2c.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of a2c.py")
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
    if not 0 < args.learning_rate < np.inf or args.max_grad_norm <= 0:  # a negative step or clip climbs the loss; 0 learns nothing
        fail(f"--learning-rate must be > 0 and finite, --max-grad-norm > 0; got {args.learning_rate}, {args.max_grad_norm}")
    for name in ("num_envs", "num_steps", "eval_episodes"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    batch_size = args.num_envs * args.num_steps
    if args.total_timesteps < 0 or 0 < args.total_timesteps < batch_size:
        fail(f"--total-timesteps must be 0 (only evaluate) or one rollout ({batch_size} steps) or more; got {args.total_timesteps}")
    if args.norm_adv and batch_size < 2:  # the std of a single advantage is nan
        fail("--norm-adv needs a rollout of 2 or more steps (--num-envs x --num-steps); got 1")
    if not 0.0 <= args.gamma <= 1.0 or not 0.0 <= args.gae_lambda <= 1.0:
        fail(f"--gamma and --gae-lambda must be in [0, 1]; got {args.gamma}, {args.gae_lambda}")
    # a negative coefficient turns its term around (value ascent, entropy descent)
    if not (args.vf_coef >= 0 and args.ent_coef >= 0):
        fail(f"--vf-coef and --ent-coef must be >= 0; got {args.vf_coef}, {args.ent_coef}")
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
    batch_size = args.num_envs * args.num_steps
    env_kwargs = json.loads(args.env_kwargs)  # a JSON object: check_args made sure
    envs = make_training_envs(args, env_kwargs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    check_spaces(args, obs_space, action_space)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_size = int(np.prod(obs_space.shape))
    agent = Agent(obs_size, int(action_space.n)).to(device)
    if args.optimizer == "rmsprop":  # PyTorch's RMSprop adds eps outside the square root, as TF's did not
        optimizer = torch.optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=0.99, eps=1e-5)
    else:
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    # Normalisation (when asked): one set of statistics shared by all envs, saved with the model
    obs_rms = RunningMeanStd((obs_size,)) if args.norm_obs else None
    reward_scaler = RewardScaler(args.num_envs, args.gamma) if args.norm_reward else None
    # everything with a state_dict, by name (the statistics when used): a checkpoint saves and restores them as one
    learner = {name: item for name, item in (("agent", agent), ("optimizer", optimizer), ("obs_rms", obs_rms),
                                             ("reward_scaler", reward_scaler)) if item is not None}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            saved_with = (saved.get("obs_rms") is not None, saved.get("return_rms") is not None)
            if saved_with != (args.norm_obs, args.norm_reward):
                fail(f"--model-path {args.model_path} was saved with norm_obs={saved_with[0]}, norm_reward="
                     f"{saved_with[1]}: give the same --norm-obs / --norm-reward flags")
            agent.load_state_dict(saved["agent"])
            if obs_rms is not None:
                obs_rms.load_state_dict(saved["obs_rms"])
            if reward_scaler is not None:
                reward_scaler.return_rms.load_state_dict(saved["return_rms"])
        except (RuntimeError, KeyError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)

    # One torch thread: 64-wide layers on a 40-sample batch are too small to split, and a second thread
    # mostly waits (as in ppo_continuous.py; CartPole: 15,300 against 12,200 SPS). Restored on return.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)

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

    # ---- rollout storage, (num_steps, num_envs, ...), in numpy: writing a step into a numpy array costs
    # a fraction of a torch slice write; the whole rollout goes to torch (and the device) once per iteration
    obs = np.zeros((args.num_steps, args.num_envs, obs_size), dtype=np.float32)  # as the networks see them
    actions = np.zeros((args.num_steps, args.num_envs), dtype=np.int64)
    rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)  # scaled with --norm-reward
    terminations = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    truncations = np.zeros((args.num_steps, args.num_envs), dtype=bool)  # and not terminated
    final_values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)  # V(true final obs) there

    envs.action_space.seed(args.seed)
    num_iterations = args.total_timesteps // batch_size if args.total_timesteps else 0
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs_np = next_obs_np.reshape(args.num_envs, -1)
    if obs_rms is not None and num_iterations > 0:  # only training updates the statistics
        obs_rms.update(next_obs_np)
    episodic_returns = []
    global_step, done_iterations = 0, 0
    start_time = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written (after an iteration's update)
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        restore_envs(envs, checkpoint["envs"], checkpoint["obs"])
        next_obs_np = checkpoint["obs"]
        envs.episode_returns[:], envs.episode_lengths[:] = checkpoint["episode_statistics"]
        set_random_states(checkpoint["random"], envs)
        global_step, done_iterations = checkpoint["global_step"], checkpoint["iteration"]
        episodic_returns = checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_obs = network_view(next_obs_np, obs_rms)  # what the networks see next
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    last_print = time.time()
    try:
        for iteration in range(done_iterations + 1, num_iterations + 1):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

            # ---- collect a rollout
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step] = next_obs
                with torch.inference_mode():
                    action, _, _, value = agent.get_action_and_value(torch.from_numpy(obs[step]).to(device))
                actions[step], values[step] = action.cpu().numpy(), value.cpu().numpy()
                next_obs_np, reward, terminated, truncated, infos = envs.step(actions[step])
                next_obs_np = next_obs_np.reshape(args.num_envs, -1)
                if obs_rms is not None:
                    obs_rms.update(next_obs_np)
                # the episode statistics (RecordEpisodeStatistics) keep the raw rewards
                rewards[step] = reward if reward_scaler is None else reward_scaler(reward, terminated | truncated)
                terminations[step] = terminated
                truncations[step] = truncated_only = truncated & ~terminated  # a termination at the limit is an end
                if truncated_only.any():  # bootstrap a time limit from V(true final obs), normalised alike
                    final_obs = np.stack([infos["final_obs"][i] for i in np.flatnonzero(truncated_only)])
                    with torch.inference_mode():
                        final_values[step, truncated_only] = agent.get_value(
                            network_input(final_obs.reshape(len(final_obs), -1), obs_rms, device)).cpu().numpy()
                next_obs = network_view(next_obs_np, obs_rms)
                if "_episode" in infos:
                    wall_time = time.time() - start_time
                    for i in np.flatnonzero(infos["_episode"]):
                        episode_return = float(infos["episode"]["r"][i])
                        episodes_csv.writerow([global_step, episode_return, int(infos["episode"]["l"][i]),
                                               f"{wall_time:.3f}"])
                        episodic_returns.append(episode_return)
                        if figure_log.on:
                            figure_log.log({"charts/episodic_return": episode_return,
                                            "charts/episodic_length": int(infos["episode"]["l"][i])}, step=global_step)

            # ---- advantages: next_values is V(s_t+1), replaced by V(final obs) where a step was truncated
            with torch.inference_mode():
                last_values = agent.get_value(torch.as_tensor(next_obs, dtype=torch.float32, device=device)).cpu().numpy()
            next_values = np.where(truncations, final_values, np.concatenate([values[1:], last_values[None]]))
            dones = terminations + truncations  # an episode ended at step t, either way
            advantages = compute_gae(rewards, values, next_values, terminations, dones, args.gamma, args.gae_lambda)
            returns = advantages + values

            # ---- one gradient step on the whole rollout (flattened to (batch_size, ...))
            b_obs = torch.from_numpy(obs.reshape(batch_size, -1)).to(device)  # (batch_size, obs_size)
            b_actions, b_advantages, b_returns, b_values = (  # (batch_size,) each
                torch.from_numpy(array.reshape(-1)).to(device) for array in (actions, advantages, returns, values))
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs, b_actions)
            if args.norm_adv:
                b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
            pg_loss = -(b_advantages * newlogprob).mean()  # the policy gradient theorem with A as the weight
            v_loss = ((newvalue - b_returns) ** 2).mean()  # regress V on the n-step return (SB3: no 1/2)
            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss
            if not torch.isfinite(loss):
                fail(f"the A2C loss became {loss.item()} at step {global_step}")
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()

            sps = global_step / max(time.time() - start_time, 1e-9)
            if figure_log.on and iteration % LOG_EVERY_ITERATIONS == 0:
                explained_var = 1 - (b_returns - b_values).var() / b_returns.var()
                figure_log.log({"charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/value_loss": v_loss.item(),
                                "losses/policy_loss": pg_loss.item(), "losses/entropy": entropy_loss.item(),
                                "losses/explained_variance": explained_var.item(), "charts/SPS": sps}, step=global_step)

            # ---- checkpoint when one is due: what carries over to the next iteration (not the rollout)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "a2c.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "iteration": iteration, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "random": random_states(envs), "envs": capture_envs(envs), "obs": next_obs_np,
                    "episode_statistics": (envs.episode_returns.copy(), envs.episode_lengths.copy()),
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                episodes_file.flush()
                eta = int(max(args.total_timesteps - global_step, 0) / sps)
                print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | "
                      f"ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "args": vars(args),
                    "obs_rms": obs_rms.state_dict() if obs_rms else None,
                    "return_rms": reward_scaler.return_rms.state_dict() if reward_scaler else None,
                    "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(agent, obs_rms, args, run_dir, device)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__,
                            "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"charts/SPS": sps, "eval/return_mean": summary["eval_return_mean"],
                    "eval/return_std": summary["eval_return_std"]}, step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS) | greedy evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
