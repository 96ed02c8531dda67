"""Proximal Policy Optimization for continuous actions (Schulman et al. 2017) with GAE (Schulman et al. 2016).

Collect a rollout of num_steps x num_envs transitions with a diagonal Gaussian policy, estimate
advantages with generalized advantage estimation, then take several epochs of minibatch steps on the
clipped surrogate objective (Eq. 7 of the PPO paper) plus a value loss and an entropy bonus. Papers:
https://arxiv.org/abs/1707.06347, https://arxiv.org/abs/1506.02438; the implementation details
(the core ones and the continuous-action ones: state-independent log-std, actions clipped only for
the env, observation normalisation and reward scaling, each clipped to +-10) follow
https://iclr-blog-track.github.io/2022/03/25/ppo-implementation-details/.

Spaces: Box (vector) observations, Box actions. Defaults equal CleanRL's ppo_continuous_action.py so
the two compare side by side. Unlike it, a time-limit truncation is bootstrapped from V(true final
obs) instead of being treated as a termination; the normalisation statistics are shared by all envs
and saved with the model, so a reloaded model evaluates exactly as it did after training; and the
reward scaler's discounted return restarts at any episode end (as in SB3), not only at a termination.

    python algorithms/ppo_continuous.py                               # Hopper-v5, 1M steps
    python algorithms/ppo_continuous.py --env-id HalfCheetah-v5 --seed 2
    python algorithms/ppo_continuous.py --env-id InvertedPendulum-v5 --total-timesteps 32768   # balances (1000)
    python algorithms/ppo_continuous.py --env-id LunarLander-v3 --env-kwargs '{"continuous": true}'
    python algorithms/ppo_continuous.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/ppo_continuous.py --model-path runs/.../ppo_continuous.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 100000 --checkpoint-dir ~/checkpoints` writes, at the end of the
first iteration past each multiple, everything the run needs to go on (the agent, the optimizer, the
observation and reward statistics, every random state, the envs, counters, the episodes so far; the
rollout itself is refilled every iteration, so it is not saved); rerunning the same command with
`--resume PATH` continues it in its run directory, bitwise on CPU as if it had never stopped. An env
whose state pickles (classic control, most pure-Python envs) is saved as it is; MuJoCo and Box2D envs
pickle only their constructor arguments, so their checkpoint holds how the current episode began and its
actions, and resuming replays them.
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
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
NORM_CLIP = 10.0  # normalised observations and scaled rewards are clipped to +-10 (as in SB3 and CleanRL)
NORM_EPSILON = 1e-8  # keeps the division by a running std finite
LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the Gaussian's normalising constant, as torch's Normal computes it


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
    """checkpoint (to resume from) after the iteration that passes every this many env steps (0: never); latest two kept"""
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
    total_timesteps: int = 1_000_000
    """environment steps of training"""
    learning_rate: float = 3e-4
    """Adam step size"""
    num_envs: int = 1
    """parallel environments"""
    num_steps: int = 2048
    """steps per env in each rollout"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over training"""
    gamma: float = 0.99
    """the discount factor (also of the return whose running std scales the rewards)"""
    gae_lambda: float = 0.95
    """the GAE lambda"""
    num_minibatches: int = 32
    """minibatches per epoch"""
    update_epochs: int = 10
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalise advantages within each minibatch"""
    clip_coef: float = 0.2
    """the surrogate clipping epsilon"""
    clip_vloss: bool = True
    """clip the value loss around the old values, as the reference implementations do"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """clip the global gradient norm"""
    target_kl: Optional[float] = None
    """stop an update's epochs early once the approximate KL exceeds this (None: never)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end (the action is the policy's mean)"""


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
        # inside each sub-env (vector observation wrappers refuse the SAME_STEP autoreset mode), so the
        # observation normalisation sees the flat vector
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
        fail(f"ppo_continuous.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"ppo_continuous.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(action_space, gym.spaces.Box):
        fail(f"ppo_continuous.py needs a continuous (Box) action space; {args.env_id} has {action_space}. Try "
             + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete) else "ppo.py or dqn.py."))
    if not isinstance(obs_space, gym.spaces.Box):
        fail(f"ppo_continuous.py needs Box observations; {args.env_id} has {obs_space}. Try --flatten-obs (a one-hot vector).")


def clip(x: np.ndarray, low, high) -> np.ndarray:
    """np.clip(x, low, high), the same values and dtype (a NaN stays NaN): np.clip's dispatch costs 2-3 µs
    more than these two comparisons, and the rollout clips three times per environment step."""
    return np.minimum(np.maximum(x, low), high)


class RunningMeanStd:
    """Running mean and variance of a stream of batches, merged batch by batch (the parallel algorithm
    of Chan et al. 1979, as in SB3 and gymnasium), in float64 (as SB3)."""

    def __init__(self, shape: tuple = ()):
        self.mean, self.var = np.zeros(shape), np.ones(shape)
        self.count = 1e-4  # a tiny prior count so the first merge needs no special case (as SB3)

    def update(self, batch: np.ndarray) -> None:
        """batch: (n, *shape), n samples merged at once. The batch's mean and variance are np.mean's and
        np.var's own arithmetic (a pairwise sum, then a division by n; the squared deviations alike),
        so the statistics are the same to the last bit, without their argument handling: this runs
        twice at every environment step, and np.mean + np.var cost 10 µs of a 4 µs computation."""
        batch_count = batch.shape[0]
        batch_mean = np.add.reduce(batch, axis=0) / batch_count
        batch_var = np.add.reduce(np.square(batch - batch_mean), axis=0) / batch_count
        delta, total = batch_mean - self.mean, self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        self.var = (self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * batch_count / total) / total
        self.count = total

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        return clip((batch - self.mean) / np.sqrt(self.var + NORM_EPSILON), -NORM_CLIP, NORM_CLIP)

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
        return clip(rewards / np.sqrt(self.return_rms.var + NORM_EPSILON), -NORM_CLIP, NORM_CLIP)

    def state_dict(self) -> dict:  # for a checkpoint: each env's discounted return so far, and their statistics
        return {"returns": torch.tensor(self.returns), "return_rms": self.return_rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].numpy().copy()
        self.return_rms.load_state_dict(state["return_rms"])


# ---------------------------------------------------------------------------------------- Agent
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (implementation detail 2)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    """Separate actor (Gaussian mean) and critic (V) networks, 64-64 tanh each."""

    def __init__(self, obs_size: int, action_size: int):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        # A small last layer starts every action's mean near 0.
        self.actor_mean = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
                                        nn.Tanh(), layer_init(nn.Linear(64, action_size), std=0.01))
        # State-independent log-std (continuous detail 2): one learned number per action dimension, std 1 at first.
        self.actor_logstd = nn.Parameter(torch.zeros(1, action_size))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return forward(self.critic, obs).squeeze(-1)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple:
        """Score the rollout's actions for the update: log pi(a|s), entropy, V(s), each (batch,). The action
        dimensions are independent: log-prob and entropy sum over them (continuous details 1, 3).

        The Gaussian's arithmetic is written out: torch.distributions.Normal builds an object and
        broadcasts its arguments, which costs more than the 64-wide networks' arithmetic."""
        action_mean = forward(self.actor_mean, obs)  # (batch, action_size)
        std = self.actor_logstd.expand_as(action_mean).exp()  # (batch, action_size): one std per dimension
        # log N(a; mu, sigma) = -(a - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi), per dimension: the
        # operations of torch's Normal in its order (std.log() twice, as Normal's log_prob and entropy)
        log_prob = (-((actions - action_mean) ** 2) / (2 * std ** 2) - std.log() - LOG_SQRT_2PI).sum(1)
        entropy = (0.5 + LOG_SQRT_2PI + std.log()).sum(1)  # H = 1/2 + log sqrt(2 pi) + log sigma per dimension
        return log_prob, entropy, self.get_value(obs)


def forward(network: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """network(x), calling each layer's forward directly: nn.Module's call machinery (hooks) costs more
    than a 64-wide layer's arithmetic."""
    for layer in network:
        x = layer.forward(x)
    return x


class RolloutPolicy:
    """The agent as it is now, in numpy, for the rollout. Each environment step needs pi(.|s) and V(s) of
    one observation: through torch that is some twenty operator calls on tiny tensors (≈ 140 µs a step on
    Hopper, a fifth of the step), in numpy on the same weights ≈ 20 µs (benchmarks.md). Taken once per
    iteration, after the update; on CPU the arrays are views of the parameters (no copy). The arithmetic
    is Agent's, in float32; the update scores the stored actions with Agent.evaluate_actions, so a
    ratio starts at 1 up to rounding."""

    def __init__(self, agent: Agent):
        self.actor_layers, self.critic_layers = host_layers(agent.actor_mean), host_layers(agent.critic)
        # the per-step constants of log N(a; mu, sigma), computed once per iteration, each (1, action_size)
        self.std = np.exp(agent.actor_logstd.detach().cpu().numpy())
        self.log_std, self.two_variance = np.log(self.std), 2 * self.std ** 2

    def value(self, obs: np.ndarray) -> np.ndarray:
        """V(s): obs (n, obs_size) float32 -> (n,)."""
        return tanh_mlp(self.critic_layers, obs)[:, 0]

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> tuple:
        """A sample a ~ N(mu(s), sigma), its log-probability (summed over the independent action dimensions)
        and V(s): obs (n, obs_size) -> actions (n, action_size), log_probs (n,), values (n,)."""
        action_mean = tanh_mlp(self.actor_layers, obs)  # (n, action_size)
        actions = action_mean + self.std * rng.standard_normal(action_mean.shape, dtype=np.float32)
        # log N(a; mu, sigma) = -(a - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi), per dimension
        log_probs = (-((actions - action_mean) ** 2) / self.two_variance - self.log_std - LOG_SQRT_2PI).sum(1)
        return actions, log_probs, self.value(obs)


def host_layers(network: nn.Sequential) -> list:
    """The (weight, bias) numpy arrays of each Linear layer: views of the parameters on CPU, copies from a GPU."""
    return [(layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy())
            for layer in network if isinstance(layer, nn.Linear)]


def tanh_mlp(layers: list, x: np.ndarray) -> np.ndarray:
    """x through (weight, bias) layers with tanh between them, as Agent's networks: x @ W^T + b."""
    for weight, bias in layers[:-1]:
        x = np.tanh(x @ weight.T + bias)
    weight, bias = layers[-1]
    return x @ weight.T + bias


# ---------------------------------------------------------------------------------------- Math
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


def clipped_surrogate_loss(ratio, advantages, clip_coef: float) -> torch.Tensor:
    """The clipped surrogate objective (Eq. 7 of Schulman et al. 2017) as a loss to minimise:
    -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)). ratio, advantages (minibatch,)."""
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()


def value_loss(newvalue, old_values, returns, clip_coef: float, clip_vloss: bool) -> torch.Tensor:
    """0.5 * mean squared error to the returns; with clip_vloss (implementation detail 9), the larger of
    it and the error of the new value kept within clip_coef of the rollout's value. All (minibatch,)."""
    v_loss_unclipped = (newvalue - returns) ** 2
    if not clip_vloss:
        return 0.5 * v_loss_unclipped.mean()
    v_clipped = old_values + (newvalue - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max(v_loss_unclipped, (v_clipped - returns) ** 2).mean()


def evaluate(agent: Agent, obs_rms: RunningMeanStd, args: Args, run_dir: str, device: torch.device) -> list:
    """Deterministic episodes (the mean action, clipped to the bounds) in a fresh env seeded apart from
    training, observations normalised with the training statistics, frozen; returns their returns."""
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
                action = agent.actor_mean(torch.as_tensor(obs_rms.normalize(obs.reshape(1, -1)), dtype=torch.float32,
                                                          device=device))
            action = np.clip(action[0].cpu().numpy(), env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action.reshape(env.action_space.shape))
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
CHECKPOINTS_KEPT = 2  # a checkpoint is small (no replay buffer): the latest two, in case the newest is damaged


def random_states(envs: gym.vector.VectorEnv, policy_rng: np.random.Generator) -> dict:
    """Every random stream the run draws from, for a checkpoint (the rollout's samples draw from
    policy_rng, the minibatch shuffles from torch's global generator, or CUDA's on a GPU)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "action_space": copy.deepcopy(envs.action_space.np_random.bit_generator.state),
            "policy": copy.deepcopy(policy_rng.bit_generator.state)}


def set_random_states(states: dict, envs: gym.vector.VectorEnv, policy_rng: np.random.Generator) -> None:
    policy_rng.bit_generator.state = states["policy"]
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    envs.action_space.np_random.bit_generator.state = states["action_space"]


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
    if script != "ppo_continuous.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of ppo_continuous.py")
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
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "eval_episodes"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    batch_size = args.num_envs * args.num_steps
    if args.total_timesteps < 0 or 0 < args.total_timesteps < batch_size:
        fail(f"--total-timesteps must be 0 (only evaluate) or one rollout ({batch_size} steps) or more; got {args.total_timesteps}")
    if batch_size % args.num_minibatches:  # else the last minibatch would be a sliver, stepped on like a full one
        fail(f"--num-minibatches ({args.num_minibatches}) must divide the rollout size {batch_size} (--num-envs x --num-steps)")
    if args.norm_adv and batch_size // args.num_minibatches < 2:  # the std of a single advantage is nan
        fail(f"--norm-adv needs minibatches of 2 or more steps; --num-minibatches {args.num_minibatches} leaves "
             f"{batch_size // args.num_minibatches}")
    if not 0.0 <= args.gamma <= 1.0 or not 0.0 <= args.gae_lambda <= 1.0:
        fail(f"--gamma and --gae-lambda must be in [0, 1]; got {args.gamma}, {args.gae_lambda}")
    # a negative coefficient turns its term around (value ascent, entropy descent, a clip window that shuts)
    if not (args.clip_coef > 0 and args.vf_coef >= 0 and args.ent_coef >= 0):
        fail(f"--clip-coef must be > 0, --vf-coef and --ent-coef >= 0; got {args.clip_coef}, {args.vf_coef}, {args.ent_coef}")
    if args.target_kl is not None and args.target_kl <= 0:  # the KL is >= 0: every epoch would stop at one minibatch
        fail(f"--target-kl must be > 0 (or left out: no early stop); got {args.target_kl}")
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
    batch_size = args.num_envs * args.num_steps
    env_kwargs = json.loads(args.env_kwargs)  # a JSON object: check_args made sure
    envs = make_training_envs(args, env_kwargs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    check_spaces(args, obs_space, action_space)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    policy_rng = np.random.default_rng(args.seed)  # the rollout's action samples (see RolloutPolicy)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_size, action_size = int(np.prod(obs_space.shape)), int(np.prod(action_space.shape))
    agent = Agent(obs_size, action_size).to(device)
    # eps 1e-5 (implementation detail 3); fused: one kernel for the whole step, faster on CPU here
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    # Observation normalisation and reward scaling (continuous details 6-9): one set of statistics shared by all
    # envs, saved with the model; evaluation reads the observation statistics and never updates them.
    obs_rms, reward_scaler = RunningMeanStd((obs_size,)), RewardScaler(args.num_envs, args.gamma)
    # everything with a state_dict, by name: a checkpoint saves and restores them as one
    learner = {"agent": agent, "optimizer": optimizer, "obs_rms": obs_rms, "reward_scaler": reward_scaler}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            agent.load_state_dict(saved["agent"])
            obs_rms.load_state_dict(saved["obs_rms"])
            reward_scaler.return_rms.load_state_dict(saved["return_rms"])
        except (RuntimeError, KeyError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)

    # One torch thread: 64-wide layers are too small to split, and a second thread mostly waits for a
    # busy core (3x the SPS here with other work running). Restored when train() returns.
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
    obs = np.zeros((args.num_steps, args.num_envs, obs_size), dtype=np.float32)  # normalised, as the networks see it
    actions = np.zeros((args.num_steps, args.num_envs, action_size), dtype=np.float32)
    logprobs = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)  # scaled
    terminations = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    truncations = np.zeros((args.num_steps, args.num_envs), dtype=bool)  # and not terminated
    final_values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)  # V(true final obs) there

    envs.action_space.seed(args.seed)
    action_low, action_high = action_space.low.reshape(-1), action_space.high.reshape(-1)  # (action_size,)
    num_iterations = args.total_timesteps // batch_size if args.total_timesteps else 0
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs_np = next_obs_np.reshape(args.num_envs, -1)
    if num_iterations > 0:  # only training updates the statistics (a loaded model evaluates with its own)
        obs_rms.update(next_obs_np)
    next_obs = obs_rms.normalize(next_obs_np)  # (num_envs, obs_size), what the networks see next
    minibatch_size = batch_size // args.num_minibatches
    episodic_returns = []
    global_step, first_iteration = 0, 1
    start_time = last_print = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written, at the end of an iteration
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        restore_envs(envs, checkpoint["envs"], checkpoint["next_obs"])
        next_obs_np = checkpoint["next_obs"]
        next_obs = obs_rms.normalize(next_obs_np)
        envs.episode_returns[:], envs.episode_lengths[:] = checkpoint["episode_statistics"]
        set_random_states(checkpoint["random"], envs, policy_rng)
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        episodic_returns = checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    try:
        for iteration in range(first_iteration, num_iterations + 1):
            if args.anneal_lr:  # implementation detail 4
                optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

            # ---- collect a rollout with the policy as the last update left it
            policy = RolloutPolicy(agent)
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step] = next_obs
                actions[step], logprobs[step], values[step] = policy.act(obs[step], policy_rng)
                # Only the env sees the action clipped to its bounds; storage keeps the sample whose
                # log-prob was taken (continuous detail 5: clipping it there would bias the policy gradient).
                env_action = clip(actions[step], action_low, action_high).reshape(envs.action_space.shape)
                next_obs_np, reward, terminated, truncated, infos = envs.step(env_action)
                next_obs_np = next_obs_np.reshape(args.num_envs, -1)
                obs_rms.update(next_obs_np)
                rewards[step] = reward_scaler(reward, terminated | truncated)
                terminations[step] = terminated
                truncations[step] = truncated_only = truncated & ~terminated  # a termination at the limit is an end
                if truncated_only.any():  # bootstrap a time limit from V(true final obs), normalised alike
                    final_obs = np.stack([infos["final_obs"][i] for i in np.flatnonzero(truncated_only)])
                    final_values[step, truncated_only] = policy.value(
                        obs_rms.normalize(final_obs.reshape(len(final_obs), -1)).astype(np.float32))
                next_obs = obs_rms.normalize(next_obs_np)
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
            last_values = policy.value(next_obs.astype(np.float32))
            next_values = np.where(truncations, final_values, np.concatenate([values[1:], last_values[None]]))
            dones = terminations + truncations  # an episode ended at step t, either way
            advantages = compute_gae(rewards, values, next_values, terminations, dones, args.gamma, args.gae_lambda)
            returns = advantages + values

            # ---- flatten the batch and optimise for update_epochs over shuffled minibatches
            b_obs, b_actions = (torch.from_numpy(array.reshape(batch_size, -1)).to(device)
                                for array in (obs, actions))  # (batch_size, obs_size), (batch_size, action_size)
            b_logprobs, b_advantages, b_returns, b_values = (  # (batch_size,) each
                torch.from_numpy(array.reshape(-1)).to(device) for array in (logprobs, advantages, returns, values))
            clipfracs = []
            for epoch in range(args.update_epochs):
                # one shuffle of the whole batch per epoch (a gather per array): each minibatch is then a
                # slice, a view, where indexing every array anew would cost a gather per array and minibatch
                b_inds = torch.randperm(batch_size, device=device)
                shuffled = [array[b_inds] for array in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values)]
                for start in range(0, batch_size, minibatch_size):
                    mb_obs, mb_actions, mb_logprobs, mb_advantages, mb_returns, mb_values = (
                        array[start:start + minibatch_size] for array in shuffled)
                    newlogprob, entropy, newvalue = agent.evaluate_actions(mb_obs, mb_actions)
                    logratio = newlogprob - mb_logprobs
                    ratio = logratio.exp()
                    with torch.no_grad():  # http://joschu.net/blog/kl-approx.html
                        old_approx_kl = (-logratio).mean()
                        approx_kl = ((ratio - 1) - logratio).mean()
                        clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())
                    if args.norm_adv:  # implementation detail 7
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                    pg_loss = clipped_surrogate_loss(ratio, mb_advantages, args.clip_coef)
                    v_loss = value_loss(newvalue, mb_values, mb_returns, args.clip_coef, args.clip_vloss)
                    entropy_loss = entropy.mean()
                    loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss
                    if not torch.isfinite(loss):  # before the step, while the weights are still finite
                        fail(f"the PPO loss became {loss.item()} at step {global_step}")
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()
                if args.target_kl is not None and approx_kl > args.target_kl:
                    break

            sps = global_step / max(time.time() - start_time, 1e-9)
            if figure_log.on:
                explained_var = 1 - (b_returns - b_values).var() / b_returns.var()
                figure_log.log({"charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/value_loss": v_loss.item(),
                                "losses/policy_loss": pg_loss.item(), "losses/entropy": entropy_loss.item(),
                                "losses/old_approx_kl": old_approx_kl.item(), "losses/approx_kl": approx_kl.item(),
                                "losses/clipfrac": torch.stack(clipfracs).mean().item(),
                                "losses/explained_variance": explained_var.item(),
                                "charts/action_std": agent.actor_logstd.exp().mean().item(), "charts/SPS": sps},
                               step=global_step)

            # ---- checkpoint when one is due: what carries over to the next iteration (the rollout is refilled)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "ppo_continuous.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "iteration": iteration, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "random": random_states(envs, policy_rng), "envs": capture_envs(envs), "next_obs": next_obs_np,
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
        torch.save({"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "obs_rms": obs_rms.state_dict(),
                    "return_rms": reward_scaler.return_rms.state_dict(), "args": vars(args),
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
    print(f"{run_name}: {global_step:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS) | deterministic evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
