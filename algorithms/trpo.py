"""Trust Region Policy Optimization (Schulman et al. 2015) with GAE (Schulman et al. 2016), continuous actions.

Collect a rollout with a diagonal Gaussian policy, estimate advantages with GAE, then take one natural-
gradient step: conjugate gradient solves F s = g (g: gradient of the surrogate, Eq. 14 of the TRPO paper;
F: the Fisher matrix, applied as the Hessian of the mean KL to the rollout policy), the step is scaled so
the quadratic KL estimate equals max_kl, and a backtracking line search shrinks it until the exact KL is
within max_kl and the surrogate improves (Appendix C). A separate critic is fitted with Adam. Papers:
https://arxiv.org/abs/1502.05477, https://arxiv.org/abs/1506.02438. Spaces: Box observations, Box actions.

Defaults are the RL Zoo's tuned MuJoCo settings for SB3-contrib's TRPO, the benchmark reference (64-64
tanh nets; SB3's VecNormalize: observations normalised, rewards scaled). As in ppo_continuous.py, the
rollout acts in numpy on the networks' own weights (RolloutPolicy: 40% more steps per second), a
time-limit truncation is bootstrapped from V(true final obs) and the normalisation statistics are saved
with the model. The KL is KL(old || new), the paper's (SB3-contrib's KL(new || old) has the same Hessian).

    python algorithms/trpo.py                               # Hopper-v5, 1M steps
    python algorithms/trpo.py --env-id HalfCheetah-v5 --max-kl 0.04 --seed 2   # the Zoo's HalfCheetah setting
    python algorithms/trpo.py --env-id LunarLander-v3 --env-kwargs '{"continuous": true}'
    python algorithms/trpo.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/trpo.py --model-path runs/.../trpo.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 100000 --checkpoint-dir ~/checkpoints` writes, at the end of the
first iteration past each multiple, everything the run needs to go on (the agent, the critic's optimizer,
the observation and reward statistics, every random state, the envs, counters, the episodes so far; the
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
from functools import partial
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions import Normal, kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
NORM_CLIP = 10.0  # normalised observations are clipped to +-10 (as in SB3's VecNormalize)
NORM_EPSILON = 1e-8  # keeps the division by a running std finite
CG_RESIDUAL_TOL = 1e-10  # conjugate gradient stops early once |r|^2 is this small (as SB3-contrib, Spinning Up)
LINE_SEARCH_STEPS, LINE_SEARCH_SHRINK = 10, 0.8  # backtracking: up to 10 tries, each 0.8 x the last (SB3-contrib's)
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
    learning_rate: float = 1e-3
    """Adam step size of the critic (the Zoo's MuJoCo setting; the policy has no learning rate)"""
    num_envs: int = 2
    """parallel environments (the Zoo's MuJoCo setting)"""
    num_steps: int = 1024
    """steps per env in each rollout (the Zoo's MuJoCo setting: 2 x 1024 = 2048 per update)"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the GAE lambda"""
    max_kl: float = 0.01
    """the trust region: largest mean KL(old || new) of a step (SB3-contrib's target_kl; Zoo: 0.04 on HalfCheetah)"""
    cg_iters: int = 25
    """conjugate gradient iterations (the Zoo's MuJoCo setting; SB3-contrib's default is 15)"""
    cg_damping: float = 0.1
    """damping added to the Fisher-vector product, F + damping * I (SB3-contrib's default and the Zoo's)"""
    critic_epochs: int = 20
    """epochs of critic regression over each rollout (SB3-contrib's n_critic_updates; the Zoo's 20)"""
    critic_minibatch_size: int = 128
    """minibatch size of the critic regression (SB3-contrib's batch_size; the Zoo's 128)"""
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
        fail(f"trpo.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"trpo.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Box):
        fail(f"trpo.py needs Box observations and Box actions; {args.env_id} has {obs_space} and {action_space}. Try "
             + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete) else "--flatten-obs." if
                isinstance(action_space, gym.spaces.Box) else "ppo.py or dqn.py."))


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


def network_input(raw_obs: np.ndarray, obs_rms: RunningMeanStd, device: torch.device) -> torch.Tensor:
    """(n, obs_size) observations, normalised and clipped, as the networks' float32 input."""
    return torch.as_tensor(obs_rms.normalize(raw_obs), dtype=torch.float32, device=device)


# ---------------------------------------------------------------------------------------- Agent
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (as SB3's policies)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    """Separate actor (Gaussian mean) and critic (V) networks, 64-64 tanh each (SB3's MlpPolicy)."""

    def __init__(self, obs_size: int, action_size: int):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        # A small last layer starts every action's mean near 0.
        self.actor_mean = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)),
                                        nn.Tanh(), layer_init(nn.Linear(64, action_size), std=0.01))
        # State-independent log-std: one learned number per action dimension, std 1 at first.
        self.actor_logstd = nn.Parameter(torch.zeros(1, action_size))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def get_distribution(self, obs: torch.Tensor) -> Normal:
        """pi(.|s), a diagonal Gaussian: its action dimensions are independent."""
        action_mean = self.actor_mean(obs)
        # no argument validation: it checks std > 0 (true by construction) at a third of the cost of acting
        return Normal(action_mean, self.actor_logstd.expand_as(action_mean).exp(), validate_args=False)


class RolloutPolicy:
    """The agent as it is now, in numpy, for the rollout. Each environment step needs pi(.|s) and V(s) of
    one observation: through torch that is some twenty operator calls on tiny tensors, through numpy on
    the same weights a fraction of it (Hopper: 2,114-2,258 -> 3,033-3,139 steps/s, benchmarks.md). Taken
    once per iteration, after the update; on CPU the arrays are views of the parameters (no copy). The
    arithmetic is Agent's, in float32; the update scores the stored actions with Agent.get_distribution,
    so the surrogate's ratio starts at 1 up to rounding."""

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


def flat_grad(output: torch.Tensor, params: list, **kwargs) -> torch.Tensor:
    """d output / d params as one (n_params,) vector."""
    return torch.cat([grad.reshape(-1) for grad in torch.autograd.grad(output, params, **kwargs)])


def make_fisher_vector_product(mean_kl: torch.Tensor, params: list, damping: float) -> Callable:
    """v -> (F + damping * I) v without forming F. mean_kl is the mean KL(pi_old || pi_theta), pi_old detached:
    at theta_old its Hessian is the Fisher matrix (Sec. 6 of the TRPO paper), and H v = d/dtheta (dKL/dtheta . v),
    a second backward pass through the first gradient's graph. Damping keeps the batch estimate of F definite."""
    kl_grad = flat_grad(mean_kl, params, create_graph=True)  # (n_params,), itself differentiable

    def fisher_vector_product(vector: torch.Tensor) -> torch.Tensor:
        return flat_grad(kl_grad @ vector, params, retain_graph=True) + damping * vector
    return fisher_vector_product


def conjugate_gradient(matrix_vector_product: Callable, b: torch.Tensor, iterations: int) -> torch.Tensor:
    """Approximately solve A x = b for a symmetric positive definite A given only v -> A v (Appendix C
    of the TRPO paper; Nocedal & Wright Alg. 5.2), starting from x = 0. Exact after n_params steps."""
    x = torch.zeros_like(b)
    residual, direction = b.clone(), b.clone()  # r = b - A x with x = 0; the first direction is r
    residual_norm = residual @ residual
    for _ in range(iterations):
        if residual_norm < CG_RESIDUAL_TOL:
            break
        a_direction = matrix_vector_product(direction)
        alpha = residual_norm / (direction @ a_direction)
        x, residual = x + alpha * direction, residual - alpha * a_direction
        new_residual_norm = residual @ residual
        direction = residual + new_residual_norm / residual_norm * direction  # A-conjugate to the previous ones
        residual_norm = new_residual_norm
    return x


def natural_gradient_step(policy_gradient, fisher_vector_product: Callable, max_kl: float, cg_iters: int) -> torch.Tensor:
    """The full step: s = F^-1 g by conjugate gradient, scaled by sqrt(2 max_kl / s^T F s) so that the
    quadratic KL estimate of the step, 0.5 * step^T F step, equals max_kl (Appendix C)."""
    search_direction = conjugate_gradient(fisher_vector_product, policy_gradient, cg_iters)
    shs = search_direction @ fisher_vector_product(search_direction)
    if shs <= 0:  # g ~ 0: conjugate gradient stopped at s = 0, no direction to step along (the line search fails)
        return torch.zeros_like(search_direction)
    return torch.sqrt(2.0 * max_kl / shs) * search_direction


def surrogate_and_kl(agent: Agent, old_dist: Normal, obs, actions, old_logprobs, advantages) -> tuple:
    """The surrogate mean(pi(a|s) / pi_old(a|s) * A) (Eq. 14 of the TRPO paper, importance-sampled) and the
    mean KL(pi_old || pi). obs (batch, obs_size), actions (batch, action_size), the others (batch,)."""
    dist = agent.get_distribution(obs)
    ratio = (dist.log_prob(actions).sum(1) - old_logprobs).exp()
    return (ratio * advantages).mean(), kl_divergence(old_dist, dist).sum(1).mean()


def line_search(params: list, full_step: torch.Tensor, surrogate_and_kl_fn: Callable, old_surrogate: torch.Tensor,
                max_kl: float, steps: int, shrink: float) -> tuple:
    """Backtracking (Appendix C): try theta_old + shrink^i * full_step for i = 0 .. steps - 1, keep the first
    whose exact mean KL is within max_kl AND whose surrogate beats old_surrogate (the quadratic model can be
    wrong either way). Returns (accepted, fraction, surrogate, kl); if none qualifies, restores theta_old."""
    old_params = parameters_to_vector(params).detach()  # (n_params,), the order vector_to_parameters reads
    for i in range(steps):
        fraction = shrink ** i
        vector_to_parameters(old_params + fraction * full_step, params)
        with torch.no_grad():
            surrogate, kl = surrogate_and_kl_fn()
        if kl <= max_kl and surrogate > old_surrogate:
            return True, fraction, surrogate, kl
    vector_to_parameters(old_params, params)
    return False, 0.0, old_surrogate, torch.zeros(())


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
                action = agent.actor_mean(network_input(obs.reshape(1, -1), obs_rms, device))
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
    policy_rng, the critic's minibatch shuffles from torch's global generator, or CUDA's on a GPU)."""
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
    if script != "trpo.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of trpo.py")
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
    if not 0 < args.learning_rate < np.inf:  # a negative step climbs the loss; 0 learns nothing
        fail(f"--learning-rate must be > 0 and finite; got {args.learning_rate}")
    for name in ("num_envs", "num_steps", "critic_epochs", "critic_minibatch_size", "cg_iters", "eval_episodes"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    batch_size = args.num_envs * args.num_steps
    if args.total_timesteps < 0 or 0 < args.total_timesteps < batch_size:
        fail(f"--total-timesteps must be 0 (only evaluate) or one rollout ({batch_size} steps) or more; got {args.total_timesteps}")
    if batch_size < 2:  # the advantages are normalised over the rollout: the std of one is nan
        fail("--num-envs x --num-steps must be 2 or more (the advantages are normalised over the rollout); got 1")
    if args.critic_minibatch_size > batch_size:
        fail(f"--critic-minibatch-size ({args.critic_minibatch_size}) must not exceed the rollout size {batch_size}")
    if not (0.0 <= args.gamma <= 1.0 and 0.0 <= args.gae_lambda <= 1.0 and args.max_kl > 0.0 and args.cg_damping >= 0.0):
        fail(f"need --gamma and --gae-lambda in [0, 1], --max-kl > 0 and --cg-damping >= 0; got {args.gamma}, "
             f"{args.gae_lambda}, {args.max_kl}, {args.cg_damping}")
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
    # Adam on the critic only (the policy moves by the natural gradient); eps 1e-5 as SB3; fused: faster on CPU
    optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    # Observation normalisation and reward scaling (the Zoo's VecNormalize), shared by all envs, saved with the
    # model. Scaled rewards let the critic fit returns of order 1-10, not hundreds (Hopper: 2,953 -> 3,459).
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

    # One torch thread: 64-wide layers are too small to split (as ppo_continuous.py). Restored on return.
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
    logprobs, rewards, terminations, values, final_values = np.zeros((5, args.num_steps, args.num_envs), dtype=np.float32)
    truncations = np.zeros((args.num_steps, args.num_envs), dtype=bool)  # and not terminated; final_values: V(final obs)

    envs.action_space.seed(args.seed)
    action_low, action_high = action_space.low.reshape(-1), action_space.high.reshape(-1)  # (action_size,)
    num_iterations = args.total_timesteps // batch_size if args.total_timesteps else 0
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs_np = next_obs_np.reshape(args.num_envs, -1)
    if num_iterations > 0:  # only training updates the statistics (a loaded model evaluates with its own)
        obs_rms.update(next_obs_np)
    next_obs = obs_rms.normalize(next_obs_np)  # (num_envs, obs_size), what the networks see next
    actor_params = list(agent.actor_mean.parameters()) + [agent.actor_logstd]  # moved by the natural gradient
    episodic_returns, line_search_failures, global_step, first_iteration = [], 0, 0, 1
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
        episodic_returns, line_search_failures = checkpoint["episodic_returns"], checkpoint["line_search_failures"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    try:
        for iteration in range(first_iteration, num_iterations + 1):
            # ---- collect a rollout with the policy as the last update left it
            policy = RolloutPolicy(agent)
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step] = next_obs
                actions[step], logprobs[step], values[step] = policy.act(obs[step], policy_rng)
                # Only the env sees the action clipped to its bounds; storage keeps the sample whose
                # log-prob was taken (clipping it there would bias the policy gradient).
                env_action = clip(actions[step], action_low, action_high).reshape(envs.action_space.shape)
                next_obs_np, reward, terminated, truncated, infos = envs.step(env_action)
                next_obs_np = next_obs_np.reshape(args.num_envs, -1)
                obs_rms.update(next_obs_np)
                # the episode statistics (RecordEpisodeStatistics) keep the raw rewards
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

            # ---- policy: one natural-gradient step, kept inside the trust region by the line search
            b_obs, b_actions = (torch.from_numpy(array.reshape(batch_size, -1)).to(device)
                                for array in (obs, actions))  # (batch_size, obs_size), (batch_size, action_size)
            b_logprobs, b_advantages, b_returns, b_values = (  # (batch_size,) each
                torch.from_numpy(array.reshape(-1)).to(device) for array in (logprobs, advantages, returns, values))
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)  # over the rollout, as SB3
            with torch.no_grad():
                old_dist = agent.get_distribution(b_obs)  # pi_old, the rollout policy, held fixed
            policy_terms = partial(surrogate_and_kl, agent, old_dist, b_obs, b_actions, b_logprobs, b_advantages)
            surrogate, mean_kl = policy_terms()  # at theta_old: ratio 1, KL 0 (its gradient too)
            policy_gradient = flat_grad(surrogate, actor_params, retain_graph=True)  # g, (n_actor_params,)
            fisher_vector_product = make_fisher_vector_product(mean_kl, actor_params, args.cg_damping)
            full_step = natural_gradient_step(policy_gradient, fisher_vector_product, args.max_kl, args.cg_iters)
            if not torch.isfinite(full_step).all():  # a NaN surrogate (or gradient) ends here too
                fail(f"the natural-gradient step became nan at step {global_step} (surrogate {surrogate.item()})")
            accepted, step_fraction, new_surrogate, new_kl = line_search(
                actor_params, full_step, policy_terms, surrogate.detach(), args.max_kl, LINE_SEARCH_STEPS, LINE_SEARCH_SHRINK)
            line_search_failures += not accepted

            # ---- critic: regress V on the returns, critic_epochs over shuffled minibatches (as SB3-contrib)
            for epoch in range(args.critic_epochs):
                b_inds = torch.randperm(batch_size, device=device)
                for start in range(0, batch_size, args.critic_minibatch_size):
                    mb_inds = b_inds[start:start + args.critic_minibatch_size]
                    v_loss = ((agent.get_value(b_obs[mb_inds]) - b_returns[mb_inds]) ** 2).mean()
                    optimizer.zero_grad()
                    v_loss.backward()
                    optimizer.step()

            sps = global_step / max(time.time() - start_time, 1e-9)
            if figure_log.on:
                figure_log.log({"charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/value_loss": v_loss.item(),
                                "losses/surrogate_improvement": (new_surrogate - surrogate).item(), "losses/kl": float(new_kl),
                                "losses/line_search_success": float(accepted), "losses/step_fraction": step_fraction,
                                "losses/explained_variance": (1 - (b_returns - b_values).var() / b_returns.var()).item(),
                                "charts/SPS": sps}, step=global_step)

            # ---- checkpoint when one is due: what carries over to the next iteration (the rollout is refilled)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "trpo.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "iteration": iteration, "line_search_failures": line_search_failures,
                    "episodic_returns": episodic_returns, "episodes_csv": episodes_so_far,
                    "wall_time": time.time() - start_time,
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
                      f"ETA {eta // 60}:{eta % 60:02d} | line search failed {line_search_failures} of {iteration}")
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
               "sps": sps, "wall_time": wall_time, "line_search_failures": line_search_failures,
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
            "wall_time": wall_time, "line_search_failures": line_search_failures}


if __name__ == "__main__":
    train(tyro.cli(Args))
