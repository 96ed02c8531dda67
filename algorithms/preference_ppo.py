"""Deep reinforcement learning from preferences (Christiano et al. 2017): PPO that never sees the reward.

RLHF's control-task twin. The agent acts as in ppo_continuous.py, but its rewards come from a reward
model r_hat(s, a) fitted to comparisons of pairs of trajectory segments (clips of segment_length steps):
a synthetic "person", the oracle, says which segment of a pair it prefers by their true returns (the
env's reward, which only the oracle and the logs ever read). The reward model is fitted by the
Bradley-Terry model over segment sums, P(segment 1 preferred) = exp(sum r_hat(1)) / (exp(sum r_hat(1)) +
exp(sum r_hat(2))) (Eq. 1 of the paper), and PPO maximises r_hat, normalised to mean 0 and std 1 over
the steps of the labelled segments (the paper normalises it too). The loop, each iteration: collect a
rollout with the policy; cut it into segments; ask the oracle about new pairs of them, as many as the
labelling schedule allows (initial_comparisons from the first rollout, of the untrained policy, then fewer and fewer as
training goes on, num_comparisons in all); refit the reward model on every comparison so far; relabel
the rollout's rewards with it; one PPO update. Paper: https://arxiv.org/abs/1706.03741.

Where it differs from the paper: PPO instead of TRPO/A2C (as the paper's successors and the imitation
library do), one reward model instead of an ensemble, and pairs drawn uniformly from the latest rollout
instead of those the ensemble disagrees on most; a segment is any segment_length consecutive steps of
one env and may cross an episode's end (the oracle and the model sum over the same steps either way).
The oracle is exact by default (the paper's synthetic labels); --label-temperature T > 0 makes it a
noisy Bradley-Terry rater, P(1 preferred) = sigmoid((R1 - R2) / T). The PPO details are
ppo_continuous.py's (observation normalisation, clipped surrogate and value loss, truncation
bootstrapping from V(true final obs)); the reward model reads raw observations and the clipped actions.

Spaces: Box (vector) observations, Box actions. Defaults: Pendulum-v1 with the PPO settings of the
imitation library's tuned preference-comparisons example (its PR #771: 8 envs x 256 steps, minibatches of
64, 10 epochs, clip 0.1, gamma 0.97, learning rate 2e-3, here annealed to 0, entropy bonus 0.01) over
500k steps and 500 comparisons. The logs (episodes.csv, the evaluation) hold the true returns: that is
the point, the agent never saw them. Measured (benchmarks.md, seeds 1-3): -174.8 +- 11.9 at
deterministic evaluation (20 episodes each). The RL Zoo's PPO settings for Pendulum (4 envs x 1024
steps, clip 0.2, gamma 0.9, lr 1e-3) scored -349 +- 180 here: their tuning leans on gSDE exploration,
which this script does not have, and PPO given the true reward at those settings scored -201 (seed 1).

    python algorithms/preference_ppo.py                                   # Pendulum-v1, 500 comparisons, 500k steps
    python algorithms/preference_ppo.py --num-comparisons 200 --seed 2
    python algorithms/preference_ppo.py --label-temperature 5             # a noisy rater
    python algorithms/preference_ppo.py --model-path runs/.../preference_ppo.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume as in ppo_continuous.py: `--checkpoint-every N --checkpoint-dir DIR`, then the same
command with `--resume PATH`, bitwise on CPU; the checkpoint also holds the reward model, its optimizer
and every labelled comparison.
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
import torch.nn.functional as F
import tyro
from torch.distributions import Normal

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
NORM_CLIP = 10.0  # normalised observations are clipped to +-10 (as in SB3 and CleanRL)
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
    """checkpoint (to resume from) after the iteration that passes every this many env steps (0: never); latest two kept"""
    checkpoint_dir: Optional[str] = None
    """where checkpoints go; None: runs/{run_name}/checkpoints (keep a long run's outside the work tree)"""
    resume: Optional[str] = None
    """a checkpoint to continue, given with the run's own arguments: the run goes on in its run directory"""
    env_id: str = "Pendulum-v1"
    """the Gymnasium environment id (Box observations, Box actions); "package.module:Env-v0" imports the module first"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"continuous": true}'"""
    flatten_obs: bool = False
    """flatten Dict or Tuple observations into one vector (gymnasium.wrappers.FlattenObservation)"""
    total_timesteps: int = 500_000
    """environment steps of training"""
    learning_rate: float = 2e-3
    """Adam step size of the policy and value networks"""
    num_envs: int = 8
    """parallel environments"""
    num_steps: int = 256
    """steps per env in each rollout"""
    anneal_lr: bool = True
    """anneal the policy's learning rate linearly to 0 over training (the final policy is then the settled one)"""
    gamma: float = 0.97
    """the discount factor"""
    gae_lambda: float = 0.95
    """the GAE lambda"""
    num_minibatches: int = 32
    """minibatches per epoch"""
    update_epochs: int = 10
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalise advantages within each minibatch"""
    clip_coef: float = 0.1
    """the surrogate clipping epsilon"""
    clip_vloss: bool = True
    """clip the value loss around the old values, as the reference implementations do"""
    ent_coef: float = 0.01
    """weight of the entropy bonus (at the Zoo's settings, without it the action std of one seed in three fell to 0.07
    and the policy collapsed)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """clip the global gradient norm"""
    target_kl: Optional[float] = None
    """stop an update's epochs early once the approximate KL exceeds this (None: never)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end (the action is the policy's mean)"""
    num_comparisons: int = 500
    """the labelling budget: pairs of segments the oracle compares over the whole run"""
    initial_comparisons: int = 100
    """of them, the pairs labelled from the first rollout (the untrained policy) before the first update"""
    segment_length: int = 25
    """steps in a segment (a clip the oracle compares; 1.25 s of Pendulum)"""
    label_temperature: float = 0.0
    """0: the oracle prefers the segment with the higher true return; > 0: it prefers it with probability sigmoid(difference / T)"""
    reward_model_updates: int = 300
    """Adam steps on the reward model after each iteration's new comparisons"""
    reward_model_lr: float = 1e-3
    """the reward model's Adam step size"""
    reward_model_batch_size: int = 64
    """comparisons per reward-model step"""
    reward_model_weight_decay: float = 1e-4
    """L2 penalty on the reward model's weights (the paper regularises it too)"""


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
        fail(f"preference_ppo.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"preference_ppo.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(action_space, gym.spaces.Box):
        fail(f"preference_ppo.py needs a continuous (Box) action space; {args.env_id} has {action_space}. Try "
             + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete) else "ppo.py or dqn.py."))
    if not isinstance(obs_space, gym.spaces.Box):
        fail(f"preference_ppo.py needs Box observations; {args.env_id} has {obs_space}. Try --flatten-obs (a one-hot vector).")


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
        return self.critic(obs).squeeze(-1)

    def get_action_and_value(self, obs: torch.Tensor, action: Optional[torch.Tensor] = None):
        """Sample an action (or score a given one): action, log pi(a|s), entropy, V(s). The action
        dimensions are independent: log-prob and entropy sum over them (continuous details 1, 3)."""
        action_mean = self.actor_mean(obs)
        # no argument validation: it checks std > 0 (true by construction) at a third of the cost of acting
        dist = Normal(action_mean, self.actor_logstd.expand_as(action_mean).exp(), validate_args=False)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action).sum(1), dist.entropy().sum(1), self.get_value(obs)


# ---------------------------------------------------------------------------------------- Preferences
class RewardModel(nn.Module):
    """r_hat(s, a): the raw observation and the clipped action -> one number per step; 64-64 ReLU."""

    def __init__(self, obs_size: int, action_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_size + action_size, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                 nn.Linear(64, 1))

    def forward(self, obs_and_actions: torch.Tensor) -> torch.Tensor:
        """(..., obs_size + action_size) -> (...)"""
        return self.net(obs_and_actions).squeeze(-1)


class Comparisons:
    """Every labelled pair so far, preallocated: the segments (capacity, 2, segment_length, obs + action
    size) and the oracle's answers (capacity,): 1 where it preferred the first segment, 0 the second,
    0.5 for a tie."""

    def __init__(self, capacity: int, segment_length: int, width: int, device: torch.device):
        self.segments = torch.zeros((capacity, 2, segment_length, width), device=device)
        self.preferences = torch.zeros(capacity, device=device)
        self.size = 0

    def add(self, segments: torch.Tensor, preferences: torch.Tensor) -> None:
        count = len(preferences)
        self.segments[self.size:self.size + count] = segments
        self.preferences[self.size:self.size + count] = preferences
        self.size += count

    def state_dict(self) -> dict:  # for a checkpoint or the saved model: the used part only
        return {"segments": self.segments[:self.size].clone(), "preferences": self.preferences[:self.size].clone()}

    def load_state_dict(self, state: dict) -> None:
        self.size = 0
        self.add(state["segments"].to(self.segments.device), state["preferences"].to(self.preferences.device))


def comparisons_due(iteration: int, num_iterations: int, initial: int, total: int) -> int:
    """How many comparisons the labelling schedule allows once `iteration` rollouts are in: `initial` after
    the first, all `total` after the last, and between them a count that grows as log(1 + k / tau)
    (k = iteration - 1, tau a tenth of the run): new labels at a rate falling as 1 / (k + tau), many
    while the reward model is poor and the policy changes fast, fewer later (the paper, too, asks less
    and less often as training goes on)."""
    if iteration >= num_iterations:
        return total
    tau = num_iterations / 10
    return initial + int((total - initial) * np.log1p((iteration - 1) / tau) / np.log1p((num_iterations - 1) / tau))


def cut_segments(obs_and_actions: torch.Tensor, true_rewards: torch.Tensor, segment_length: int) -> tuple:
    """The rollout's segments: each env's steps in consecutive, non-overlapping windows of segment_length
    (a rest shorter than that is left out). In: (num_steps, num_envs, width) and (num_steps, num_envs);
    out: the segments (num_segments, segment_length, width) and their true returns (num_segments,)."""
    num_steps, num_envs = true_rewards.shape
    usable = num_steps // segment_length * segment_length
    segments = obs_and_actions[:usable].transpose(0, 1).reshape(-1, segment_length, obs_and_actions.shape[-1])
    return segments, true_rewards[:usable].transpose(0, 1).reshape(-1, segment_length).sum(1)


def oracle_preferences(first_returns: torch.Tensor, second_returns: torch.Tensor, temperature: float) -> torch.Tensor:
    """The synthetic person's answers, (pairs,): 1.0 where it prefers the first segment, 0.0 the second.
    Exact (temperature 0): by the higher true return, 0.5 on a tie; noisy: the first with probability
    sigmoid((R1 - R2) / temperature), the Bradley-Terry rater the reward model assumes."""
    difference = first_returns - second_returns
    if temperature == 0:
        return 0.5 + 0.5 * torch.sign(difference)
    return (torch.rand_like(difference) < torch.sigmoid(difference / temperature)).float()


def preference_margins(reward_model: RewardModel, segments: torch.Tensor) -> torch.Tensor:
    """sum r_hat(first) - sum r_hat(second) of each pair: segments (batch, 2, segment_length, width) -> (batch,)."""
    sums = reward_model(segments).sum(-1)  # (batch, 2)
    return sums[:, 0] - sums[:, 1]


def preference_loss(reward_model: RewardModel, segments: torch.Tensor, preferences: torch.Tensor) -> torch.Tensor:
    """The Bradley-Terry cross-entropy over segment sums (Eq. 1 of Christiano et al. 2017):
    P(first preferred) = sigmoid(sum r_hat(first) - sum r_hat(second)); preferences (batch,)."""
    return F.binary_cross_entropy_with_logits(preference_margins(reward_model, segments), preferences)


@torch.no_grad()
def preference_accuracy(reward_model: RewardModel, segments: torch.Tensor, preferences: torch.Tensor) -> float:
    """How often the model ranks a pair as the oracle did (ties left out; 1.0 when there is no strict pair)."""
    margin, strict = preference_margins(reward_model, segments), preferences != 0.5
    return ((margin > 0).float() == preferences)[strict].float().mean().item() if strict.any() else 1.0


# ---------------------------------------------------------------------------------------- Math
def compute_gae(rewards, values, next_values, terminations, dones, gamma: float, gae_lambda: float) -> torch.Tensor:
    """Generalized advantage estimation (Eq. 11-16 of Schulman et al. 2016), all (num_steps, num_envs).

    next_values[t] is V of the state after step t: V(s_t+1) inside an episode, V(true final obs)
    where step t was truncated. delta_t = r_t + gamma * (1 - terminated_t) * next_values[t] - V(s_t);
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_t+1, so an episode end (either kind) stops the
    sum and only a termination drops the bootstrap. gae_lambda = 1 gives n-step returns minus V."""
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[0])
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


def random_states(envs: gym.vector.VectorEnv) -> dict:
    """Every random stream the run draws from, for a checkpoint (the policy's samples and the minibatch
    shuffles draw from torch's global generator, or CUDA's on a GPU)."""
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
    if script != "preference_ppo.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of preference_ppo.py")
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
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "eval_episodes", "segment_length",
                 "reward_model_updates", "reward_model_batch_size"):
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
    if not 1 <= args.initial_comparisons <= args.num_comparisons:
        fail(f"--initial-comparisons must be in [1, --num-comparisons ({args.num_comparisons})]; got {args.initial_comparisons}")
    if args.num_envs * (args.num_steps // args.segment_length) < 2:
        fail(f"--segment-length {args.segment_length} leaves fewer than 2 segments in a rollout of {args.num_envs} x "
             f"{args.num_steps} steps: nothing to compare")
    if args.label_temperature < 0 or args.reward_model_weight_decay < 0 or not 0 < args.reward_model_lr < np.inf:
        fail(f"--label-temperature and --reward-model-weight-decay must be >= 0, --reward-model-lr > 0 and finite; got "
             f"{args.label_temperature}, {args.reward_model_weight_decay}, {args.reward_model_lr}")
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
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_size, action_size = int(np.prod(obs_space.shape)), int(np.prod(action_space.shape))
    agent = Agent(obs_size, action_size).to(device)
    # eps 1e-5 (implementation detail 3); fused: one kernel for the whole step, faster on CPU here
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    # Observation normalisation (continuous details 6-8): one set of statistics shared by all envs, saved
    # with the model; evaluation reads them and never updates them. No reward scaling: r_hat is normalised.
    obs_rms = RunningMeanStd((obs_size,))
    reward_model = RewardModel(obs_size, action_size).to(device)
    reward_optimizer = torch.optim.Adam(reward_model.parameters(), lr=args.reward_model_lr,
                                        weight_decay=args.reward_model_weight_decay)
    comparisons = Comparisons(args.num_comparisons, args.segment_length, obs_size + action_size, device)
    # everything with a state_dict, by name: a checkpoint saves and restores them as one
    learner = {"agent": agent, "optimizer": optimizer, "obs_rms": obs_rms, "reward_model": reward_model,
               "reward_optimizer": reward_optimizer, "comparisons": comparisons}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            agent.load_state_dict(saved["agent"])
            obs_rms.load_state_dict(saved["obs_rms"])
            reward_model.load_state_dict(saved["reward_model"])
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

    # ---- rollout storage, (num_steps, num_envs, ...)
    obs = torch.zeros((args.num_steps, args.num_envs, obs_size), device=device)  # normalised: what the agent sees
    actions = torch.zeros((args.num_steps, args.num_envs, action_size), device=device)
    # what the reward model and the oracle see: raw observations, the actions the env got, the true rewards
    obs_and_env_actions = torch.zeros((args.num_steps, args.num_envs, obs_size + action_size), device=device)
    true_rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    terminations = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)
    truncations = torch.zeros((args.num_steps, args.num_envs), dtype=torch.bool, device=device)  # and not terminated
    final_values = torch.zeros((args.num_steps, args.num_envs), device=device)  # V(true final obs) there

    envs.action_space.seed(args.seed)
    action_low, action_high = action_space.low.reshape(-1), action_space.high.reshape(-1)  # (action_size,)
    num_iterations = args.total_timesteps // batch_size if args.total_timesteps else 0
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs_np = next_obs_np.reshape(args.num_envs, -1)
    if num_iterations > 0:  # only training updates the statistics (a loaded model evaluates with its own)
        obs_rms.update(next_obs_np)
    next_obs = torch.as_tensor(obs_rms.normalize(next_obs_np), dtype=torch.float32, device=device)
    minibatch_size = batch_size // args.num_minibatches
    episodic_returns = []
    global_step, first_iteration = 0, 1
    start_time = last_print = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written, at the end of an iteration
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        restore_envs(envs, checkpoint["envs"], checkpoint["next_obs"])
        next_obs_np = checkpoint["next_obs"]
        next_obs = torch.as_tensor(obs_rms.normalize(next_obs_np), dtype=torch.float32, device=device)
        envs.episode_returns[:], envs.episode_lengths[:] = checkpoint["episode_statistics"]
        set_random_states(checkpoint["random"], envs)
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        episodic_returns = checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    try:
        for iteration in range(first_iteration, num_iterations + 1):
            if args.anneal_lr:  # implementation detail 4
                optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

            # ---- collect a rollout
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step] = next_obs
                obs_and_env_actions[step, :, :obs_size] = torch.as_tensor(next_obs_np, device=device)
                with torch.inference_mode():
                    action, logprob, _, value = agent.get_action_and_value(next_obs)
                actions[step], logprobs[step], values[step] = action, logprob, value
                # Only the env sees the action clipped to its bounds; storage keeps the sample whose
                # log-prob was taken (continuous detail 5: clipping it there would bias the policy gradient).
                env_action = np.clip(action.cpu().numpy(), action_low, action_high).reshape(envs.action_space.shape)
                obs_and_env_actions[step, :, obs_size:] = torch.as_tensor(env_action.reshape(args.num_envs, -1), device=device)
                next_obs_np, reward, terminated, truncated, infos = envs.step(env_action)
                next_obs_np = next_obs_np.reshape(args.num_envs, -1)
                obs_rms.update(next_obs_np)
                true_rewards[step] = torch.as_tensor(reward, device=device)  # for the oracle and the logs only
                terminations[step] = torch.from_numpy(terminated)
                truncated_only = truncated & ~terminated  # a termination at the limit is an end
                truncations[step] = torch.from_numpy(truncated_only)
                if truncated_only.any():  # bootstrap a time limit from V(true final obs), normalised alike
                    final_obs = np.stack([infos["final_obs"][i] for i in np.flatnonzero(truncated_only)])
                    with torch.inference_mode():
                        final_values[step, truncations[step]] = agent.get_value(torch.as_tensor(
                            obs_rms.normalize(final_obs.reshape(len(final_obs), -1)), dtype=torch.float32, device=device))
                next_obs = torch.as_tensor(obs_rms.normalize(next_obs_np), dtype=torch.float32, device=device)
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

            # ---- new comparisons, as many as the schedule allows: random pairs of this rollout's segments
            segments, segment_returns = cut_segments(obs_and_env_actions, true_rewards, args.segment_length)
            new = comparisons_due(iteration, num_iterations, args.initial_comparisons, args.num_comparisons) - comparisons.size
            if new > 0:
                first = torch.randint(len(segments), (new,), device=device)
                second = (first + 1 + torch.randint(len(segments) - 1, (new,), device=device)) % len(segments)  # != first
                answers = oracle_preferences(segment_returns[first], segment_returns[second], args.label_temperature)
                comparisons.add(torch.stack([segments[first], segments[second]], dim=1), answers)

            # ---- refit the reward model on every comparison so far, then relabel the rollout with it
            for _ in range(args.reward_model_updates):
                picks = torch.randint(comparisons.size, (args.reward_model_batch_size,), device=device)
                rm_loss = preference_loss(reward_model, comparisons.segments[picks], comparisons.preferences[picks])
                reward_optimizer.zero_grad()
                rm_loss.backward()
                reward_optimizer.step()
            if not torch.isfinite(rm_loss):  # once per iteration, not a host sync per step: a NaN stays NaN
                fail(f"the reward model's loss became {rm_loss.item()} at step {global_step}")
            with torch.no_grad():
                predicted = reward_model(obs_and_env_actions)  # (num_steps, num_envs)
                # Normalised by r_hat's mean and std over every step of the labelled segments: a sample that
                # only grows, so the scale does not shrink when the policy's rollouts narrow (normalising over
                # the rollout itself magnified the model's errors between good states late in training)
                labelled = reward_model(comparisons.segments[:comparisons.size])
            rewards = (predicted - labelled.mean()) / (labelled.std() + NORM_EPSILON)

            # ---- advantages: next_values is V(s_t+1), replaced by V(final obs) where a step was truncated
            with torch.inference_mode():
                next_values = torch.cat([values[1:], agent.get_value(next_obs).unsqueeze(0)])
            next_values = torch.where(truncations, final_values, next_values)
            dones = terminations + truncations.float()  # an episode ended at step t, either way
            advantages = compute_gae(rewards, values, next_values, terminations, dones, args.gamma, args.gae_lambda)
            returns = advantages + values

            # ---- flatten the batch and optimise for update_epochs over shuffled minibatches
            b_obs, b_actions, b_logprobs = obs.reshape(batch_size, -1), actions.reshape(batch_size, -1), logprobs.reshape(-1)
            b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
            clipfracs = []
            for epoch in range(args.update_epochs):
                b_inds = torch.randperm(batch_size, device=device)
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = b_inds[start:start + minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()
                    with torch.no_grad():  # http://joschu.net/blog/kl-approx.html
                        old_approx_kl = (-logratio).mean()
                        approx_kl = ((ratio - 1) - logratio).mean()
                        clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())
                    mb_advantages = b_advantages[mb_inds]
                    if args.norm_adv:  # implementation detail 7
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                    pg_loss = clipped_surrogate_loss(ratio, mb_advantages, args.clip_coef)
                    v_loss = value_loss(newvalue, b_values[mb_inds], b_returns[mb_inds], args.clip_coef, args.clip_vloss)
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
                                "charts/action_std": agent.actor_logstd.exp().mean().item(), "charts/SPS": sps,
                                "charts/comparisons": comparisons.size, "losses/preference_loss": rm_loss.item(),
                                "charts/reward_model_accuracy": preference_accuracy(
                                    reward_model, comparisons.segments[picks], comparisons.preferences[picks]),
                                # how well r_hat tracks the reward it never saw, step by step (a diagnostic only)
                                "charts/reward_correlation": torch.corrcoef(torch.stack(
                                    [predicted.flatten(), true_rewards.flatten()]))[0, 1].item()},
                               step=global_step)

            # ---- checkpoint when one is due: what carries over to the next iteration (the rollout is refilled)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "preference_ppo.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "iteration": iteration, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "random": random_states(envs), "envs": capture_envs(envs), "next_obs": next_obs_np,
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
                      f"comparisons {comparisons.size} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "obs_rms": obs_rms.state_dict(),
                    "reward_model": reward_model.state_dict(), "comparisons": comparisons.state_dict(),
                    "args": vars(args), "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(agent, obs_rms, args, run_dir, device)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time, "comparisons": comparisons.size,
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
