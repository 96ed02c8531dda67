"""Deep Q-Network (Mnih et al. 2015), with Double-Q (van Hasselt et al. 2016), Dueling (Wang et al. 2016),
prioritized replay (Schaul et al. 2016) and n-step returns (Sutton 1988; Hessel et al. 2018) as options.

Learn Q(s, a) with a neural network from a replay buffer of past transitions, regressing each
Q(s, a) on the TD target r + gamma * max_a' Q_target(s', a') of a slowly updated target network;
act epsilon-greedily. --double-q picks a' with the online network and values it with the target
network; --dueling splits the head into V(s) + A(s, a) - mean_a A(s, a).
--prioritized replays transition i with probability P(i) = p_i / sum_k p_k, p_i = (|delta_i| + eps)^alpha
(proportional prioritization, Section 3.3 of Schaul et al.), new transitions at the largest priority
so far, and corrects the bias with importance weights (N P(i))^-beta / max_j w_j (the batch's largest),
beta annealed linearly to 1 over training (Section 3.4). --n-step N regresses on
r_t + gamma r_t+1 + ... + gamma^(N-1) r_t+N-1 + gamma^N max_a Q_target(s_t+N, a): one window per env,
cut at a termination (no bootstrap) and at a truncation (bootstrap from the true final observation
with gamma^k, k the rewards summed), so it never spans two episodes, and an episode's last N - 1
transitions are stored with their shorter returns, not dropped.
Papers: https://www.nature.com/articles/nature14236, https://arxiv.org/abs/1509.06461,
https://arxiv.org/abs/1511.06581, https://arxiv.org/abs/1511.05952, https://arxiv.org/abs/1710.02298.

Spaces: Box (vector) observations, Discrete actions. Defaults equal CleanRL's dqn.py, so the two
compare side by side. Unlike it, --num-envs may exceed 1 (update and target-sync frequencies stay in
environment steps), and the buffer stores the true final observation of a truncated episode and
`terminated` (never `done`), so a time limit is bootstrapped and a real end is not.

    python algorithms/dqn.py                                          # CartPole-v1, 500k steps
    python algorithms/dqn.py --env-id Acrobot-v1 --double-q --dueling
    python algorithms/dqn.py --env-id MountainCar-v0 --huber --max-grad-norm 10
    python algorithms/dqn.py --env-id LunarLander-v3 --prioritized --n-step 3
    python algorithms/dqn.py --env-kwargs '{"sutton_barto_reward": true}'  # CartPole: -1 at the end, 0 before
    python algorithms/dqn.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/dqn.py --model-path runs/.../dqn.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 50000 --checkpoint-dir ~/checkpoints` writes everything the run
needs to go on (networks, optimizer, the used part of the replay buffer, every random state, counters,
the episodes so far); rerunning the same command with `--resume PATH` continues it in its run
directory, bitwise on CPU as if it had never stopped. An env whose state pickles (classic control, most
pure-Python envs) is saved as it is; MuJoCo and Box2D envs pickle only their constructor arguments, so
their checkpoint holds how the current episode began and its actions, and resuming replays them.
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

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
LOG_EVERY_UPDATES = 100  # losses go to W&B (and are checked for NaN) every this many updates


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
    num_envs: int = 1
    """parallel environments"""
    learning_rate: float = 2.5e-4
    """Adam step size"""
    buffer_size: int = 10_000
    """replay buffer capacity (transitions)"""
    gamma: float = 0.99
    """the discount factor"""
    tau: float = 1.0
    """target network update rate (1.0: copy the online network)"""
    target_network_frequency: int = 500
    """environment steps between target network updates"""
    batch_size: int = 128
    """transitions per gradient step"""
    start_e: float = 1.0
    """epsilon at the start of training"""
    end_e: float = 0.05
    """epsilon at the end of the schedule"""
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon falls linearly from start_e to end_e"""
    learning_starts: int = 10_000
    """environment steps of acting before the first gradient step"""
    train_frequency: int = 10
    """environment steps between gradient steps"""
    double_q: bool = False
    """Double DQN: choose a' with the online network, value it with the target network"""
    dueling: bool = False
    """dueling head: Q = V(s) + A(s, a) - mean_a A(s, a)"""
    huber: bool = False
    """Huber (smooth L1) TD loss instead of the mean squared error"""
    max_grad_norm: Optional[float] = None
    """clip the gradient to this global norm (None: no clipping)"""
    n_step: int = 1
    """n-step returns: the target sums n rewards before it bootstraps (1: the one-step DQN target)"""
    prioritized: bool = False
    """proportional prioritized replay (Schaul et al. 2016)"""
    prioritized_alpha: float = 0.6
    """priority exponent alpha: p_i = (|delta_i| + eps)^alpha (0: uniform replay)"""
    prioritized_beta: float = 0.4
    """importance-sampling exponent at the start of training, annealed linearly to 1 at its end"""
    prioritized_eps: float = 1e-6
    """added to |delta| so that no transition's priority is 0"""
    hidden_sizes: tuple[int, ...] = (120, 84)
    """units of the hidden ReLU layers"""
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
        # of it (26 of CartPole's 70 µs a step); the loop copies what it keeps.
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
        fail(f"dqn.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"dqn.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Discrete):
        fail(f"dqn.py needs Box observations and Discrete actions; {args.env_id} has {obs_space} observations "
             f"and {action_space} actions. Try " + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete)
                                                   else "reinforce.py."))


# ---------------------------------------------------------------------------------------- Network
class QNetwork(nn.Module):
    """obs (batch, obs_size) -> Q-values (batch, n_actions); with `dueling`, two heads V and A."""

    def __init__(self, obs_size: int, n_actions: int, hidden_sizes: tuple, dueling: bool):
        super().__init__()
        layers, width = [], obs_size
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.trunk = nn.Sequential(*layers)
        self.dueling = dueling
        self.advantage = nn.Linear(width, n_actions)  # the Q head when not dueling
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Each layer's forward is called directly: nn.Module's call machinery (hooks) costs more than a
        # small layer's arithmetic (acting goes through ActingQNetwork instead).
        features = obs
        for layer in self.trunk:
            features = layer.forward(features)
        advantage = self.advantage.forward(features)
        if not self.dueling:
            return advantage
        # Eq. 9 of Wang et al. 2016: subtracting the mean advantage makes V and A identifiable.
        return self.value.forward(features) + advantage - advantage.mean(dim=1, keepdim=True)


class ActingQNetwork:
    """The Q network as it is now, in numpy, for acting. An environment step needs the Q-values of one
    observation: through torch that is a dozen operator calls on tiny tensors (≈ 30 µs), in numpy on the
    same float32 weights ≈ 7 µs. On CPU the arrays are views of the parameters, which the optimizer
    updates in place; from a GPU they are copies, so the loop takes a new one after every update."""

    def __init__(self, q_network: QNetwork):
        self.trunk = [host_layer(layer) for layer in q_network.trunk if isinstance(layer, nn.Linear)]
        self.advantage = host_layer(q_network.advantage)
        self.value = host_layer(q_network.value) if q_network.dueling else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """QNetwork.forward's arithmetic: obs (n, obs_size) float32 -> Q-values (n, n_actions)."""
        features = obs
        for weight, bias in self.trunk:
            features = np.maximum(features @ weight.T + bias, 0.0)  # Linear, then ReLU
        weight, bias = self.advantage
        advantage = features @ weight.T + bias
        if self.value is None:
            return advantage
        weight, bias = self.value
        return features @ weight.T + bias + advantage - advantage.mean(axis=1, keepdims=True)  # Eq. 9


def host_layer(layer: nn.Linear) -> tuple:
    """A Linear layer's (weight, bias) as numpy arrays: views of the parameters on CPU, copies from a GPU."""
    return layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy()


# ---------------------------------------------------------------------------------------- Replay buffer
class ReplayBuffer:
    """Circular storage in preallocated tensors in host memory; one index tensor samples a batch, which
    then moves to the training device (nothing to move on CPU). Each step writes through numpy views of
    the same memory: five numpy slice writes cost about a fifth of five torch ones (profile_dqn.py).
    `discounts` holds each transition's bootstrap factor: gamma, or gamma^k for a k-step transition."""

    STORED = ("obs", "next_obs", "actions", "rewards", "terminations", "discounts")

    def __init__(self, capacity: int, obs_size: int, device: torch.device):
        self.capacity, self.pos, self.size, self.device = capacity, 0, 0, device
        self.obs = torch.zeros((capacity, obs_size), dtype=torch.float32)
        self.next_obs = torch.zeros((capacity, obs_size), dtype=torch.float32)
        self.actions = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity, dtype=torch.float32)
        self.terminations = torch.zeros(capacity, dtype=torch.float32)
        self.discounts = torch.zeros(capacity, dtype=torch.float32)
        self.views = [getattr(self, name).numpy() for name in self.STORED]  # share the tensors' memory

    def add(self, obs, next_obs, actions, rewards, terminations, discounts) -> None:
        """Store transitions: numpy arrays, each (n, ...), cast to the storage's dtype (float64 obs, bool
        terminations), wrapping at capacity."""
        n, written = len(actions), 0
        while written < n:  # the part that fits before the end, then (wrapping) the rest from the start
            count = min(n - written, self.capacity - self.pos)
            for view, values in zip(self.views, (obs, next_obs, actions, rewards, terminations, discounts)):
                rows = view[self.pos:self.pos + count]
                rows[...] = values[written:written + count].reshape(rows.shape)  # numpy casts the dtype as it copies
            self.pos, written = (self.pos + count) % self.capacity, written + count
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict:
        """For a checkpoint: the used rows only, copied (torch.save of a slice would write the whole
        preallocated storage it views)."""
        return {"pos": self.pos, "size": self.size, **{name: getattr(self, name)[:self.size].clone() for name in self.STORED}}

    def load_state_dict(self, state: dict) -> None:
        """Copies into the existing tensors, so the numpy views that add() writes through stay theirs."""
        self.pos, self.size = state["pos"], state["size"]
        for name in self.STORED:
            getattr(self, name)[:self.size] = state[name]

    def rows(self, index: torch.Tensor) -> tuple:
        """The stored transitions at `index`, on the training device: obs, actions, rewards, next_obs,
        terminations, discounts."""
        return tuple(getattr(self, name)[index].to(self.device) for name in
                     ("obs", "actions", "rewards", "next_obs", "terminations", "discounts"))

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple:
        """A uniform batch: the rows, their indices and importance weights (None: all equal)."""
        index = torch.randint(self.size, (batch_size,), generator=generator)  # generator: a CPU one
        return self.rows(index), index, None


class SumTree:
    """A complete binary tree in one array: node k has children 2k and 2k + 1, the leaves (one per buffer
    row, a power of two of them) sit at [leaves, 2 leaves), and the root, node 1, holds their total.
    Both operations take a whole batch and walk the tree level by level (no per-item Python loop):
    update sets leaves and recomputes each parent from its two children (exact, where patching sums
    with deltas would drift; a parent listed twice is just recomputed twice), find descends from the
    root by prefix sums. float64 throughout."""

    def __init__(self, capacity: int):
        self.leaves = 1 << max(capacity - 1, 1).bit_length()  # the smallest power of two >= capacity
        self.nodes = np.zeros(2 * self.leaves)

    def total(self) -> float:
        return float(self.nodes[1])

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        # an index repeated in one batch keeps its last priority, as one-by-one updates would
        last = len(indices) - 1 - np.unique(indices[::-1], return_index=True)[1]
        nodes = indices[last] + self.leaves
        self.nodes[nodes] = priorities[last]
        while nodes.size and nodes[0] > 1:  # all leaves share one depth: a level is handled at once
            nodes = nodes // 2
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """For each value u in [0, total): the leaf i with sum(p_0..p_i-1) <= u < sum(p_0..p_i)."""
        nodes = np.ones(len(prefix_sums), dtype=np.int64)
        prefix_sums = prefix_sums.copy()
        while nodes[0] < self.leaves:
            left_child = 2 * nodes
            left = self.nodes[left_child]
            # right when u is past the left subtree; never into an empty subtree (u at total by rounding)
            go_right = (prefix_sums >= left) & (self.nodes[left_child + 1] > 0)
            prefix_sums -= left * go_right
            nodes = left_child + go_right
        return nodes - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritization (Section 3.3 of Schaul et al. 2016): row i is drawn with probability
    p_i / sum_k p_k, where p_i = (|delta_i| + eps)^alpha is kept in a SumTree. A batch is drawn by
    stratified sampling: one prefix sum uniformly in each of batch_size equal slices of the total.
    Priorities (new rows at the largest so far, updates after a gradient step) are queued in order and
    written to the tree in one batch just before the next draw: one tree walk per gradient step, not
    one per env step and one per update (the queue's order keeps the last write of a row the one that
    counts, exactly as writing each at once would)."""

    def __init__(self, capacity: int, obs_size: int, device: torch.device, alpha: float, eps: float):
        super().__init__(capacity, obs_size, device)
        self.tree, self.alpha, self.eps = SumTree(capacity), alpha, eps
        self.max_priority = 1.0  # new transitions get the largest priority so far: each is replayed at least once soon
        self.queued = []  # (rows, priorities) not yet written to the tree, oldest first
        # new rows since then: a run of consecutive rows, all at the max priority when it began (only an
        # update can raise the max, and an update first queues the run), kept as three numbers per env step
        self.new_first, self.new_count, self.new_priority = 0, 0, 1.0

    def add(self, obs, next_obs, actions, rewards, terminations, discounts) -> None:
        if self.new_count == 0:
            self.new_first, self.new_priority = self.pos, self.max_priority
        self.new_count += len(actions)
        super().add(obs, next_obs, actions, rewards, terminations, discounts)

    def queue_new_rows(self) -> None:
        if self.new_count:
            rows = (self.new_first + np.arange(self.new_count)) % self.capacity
            self.queued.append((rows, np.full(self.new_count, self.new_priority)))
            self.new_count = 0

    def write_queued(self) -> None:
        self.queue_new_rows()
        if self.queued:
            rows, priorities = (np.concatenate(column) for column in zip(*self.queued))
            self.tree.update(rows, priorities)
            self.queued = []

    def sample(self, batch_size: int, generator: torch.Generator, beta: float = 1.0) -> tuple:
        """The rows, their indices and importance weights (N P(i))^-beta / max_j w_j (Section 3.4)."""
        self.write_queued()
        total = self.tree.total()
        offsets = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy()
        index = np.minimum(self.tree.find((np.arange(batch_size) + offsets) * total / batch_size), self.size - 1)
        probabilities = self.tree.nodes[index + self.tree.leaves] / total
        weights = (self.size * probabilities) ** -beta
        weights = torch.as_tensor(weights / weights.max(), dtype=torch.float32, device=self.device)
        return self.rows(torch.from_numpy(index)), index, weights

    def update_priorities(self, index: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = (np.abs(td_errors) + self.eps) ** self.alpha
        self.queue_new_rows()  # rows added before this update are written before it
        self.queued.append((index, priorities))
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict:
        self.write_queued()
        return {**super().state_dict(), "tree": self.tree.nodes.copy(), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree.nodes[:], self.max_priority = state["tree"], state["max_priority"]


class NStepWindow:
    """Turns each env's one-step transitions into n-step ones: per env, the last n (obs, action, reward)
    of the current episode. When an env's window is full, its oldest step leaves as one transition
    (sum of n discounted rewards, the obs n steps later, discount gamma^n); when its episode ends, every
    step still in the window leaves with the rewards to the end, that end's true final observation,
    discount gamma^k (k its rewards) and the episode's termination flag, and the window empties. So no
    transition spans two episodes, and a truncation bootstraps where a termination does not."""

    def __init__(self, n: int, num_envs: int, obs_size: int, gamma: float):
        self.n, self.gamma = n, gamma
        self.obs = np.zeros((num_envs, n, obs_size), dtype=np.float32)
        self.actions = np.zeros((num_envs, n), dtype=np.int64)
        self.rewards = np.zeros((num_envs, n))
        self.length = np.zeros(num_envs, dtype=np.int64)  # steps in each env's window
        self.powers = gamma ** np.arange(n)  # (n,): 1, gamma, gamma^2, ...

    def push(self, obs, actions, rewards, real_next_obs, terminations, ended) -> tuple:
        """One vector step in; the transitions it completes out, as ReplayBuffer.add takes them."""
        envs = np.arange(len(actions))
        obs, real_next_obs = obs.reshape(len(envs), -1), real_next_obs.reshape(len(envs), -1)
        self.obs[envs, self.length], self.actions[envs, self.length] = obs, actions
        self.rewards[envs, self.length] = rewards
        self.length += 1
        full = np.flatnonzero((self.length == self.n) & ~ended)  # these emit their oldest step
        parts = [(self.obs[full, 0], real_next_obs[full], self.actions[full, 0], self.rewards[full] @ self.powers,
                  np.zeros(len(full), dtype=bool), np.full(len(full), self.gamma ** self.n))]
        for window in (self.obs, self.actions, self.rewards):  # slide the full windows by one
            window[full, :-1] = window[full, 1:]
        self.length[full] -= 1
        for i in np.flatnonzero(ended):  # an episode ended: flush the whole window (rare: no hot-path loop)
            k = self.length[i]
            returns = np.array([self.rewards[i, j:k] @ self.powers[:k - j] for j in range(k)])  # to the episode's end
            parts.append((self.obs[i, :k], np.repeat(real_next_obs[i:i + 1], k, axis=0), self.actions[i, :k], returns,
                          np.full(k, terminations[i]), self.gamma ** np.arange(k, 0, -1)))
            self.length[i] = 0
        return tuple(np.concatenate(column) for column in zip(*parts))

    def state_dict(self) -> dict:
        return {"obs": self.obs.copy(), "actions": self.actions.copy(), "rewards": self.rewards.copy(),
                "length": self.length.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.obs[:], self.actions[:], self.rewards[:], self.length[:] = (state[name] for name in
                                                                         ("obs", "actions", "rewards", "length"))


# ---------------------------------------------------------------------------------------- Math
def linear_schedule(start_e: float, end_e: float, duration: int, t: int) -> float:
    """Epsilon falls linearly from start_e to end_e over `duration` steps, then stays."""
    return max(end_e, start_e + (end_e - start_e) * t / max(duration, 1))


def td_target(rewards, terminations, next_q_target, gamma, next_q_online=None) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * Q_target(s', a'), with a' = argmax_a Q_target(s', a)
    (Mnih et al. 2015) or, given next_q_online, a' = argmax_a Q_online(s', a) (Double DQN, Eq. 4 of
    van Hasselt et al. 2016). Shapes: rewards, terminations (batch,); next_q_* (batch, n_actions);
    gamma a number or (batch,): gamma^k for k-step transitions, whose r sums k discounted rewards."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        next_value = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return rewards + gamma * (1.0 - terminations) * next_value


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target (tau = 1 copies)."""
    for target_param, param in zip(target.parameters(), online.parameters()):
        target_param.lerp_(param, tau)


def random_states(envs: gym.vector.VectorEnv, rng: np.random.Generator, sample_generator: torch.Generator) -> dict:
    """Every random stream the run draws from, for a checkpoint."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "rng": copy.deepcopy(rng.bit_generator.state), "sample_generator": sample_generator.get_state(),
            "action_space": copy.deepcopy(envs.action_space.np_random.bit_generator.state)}


def set_random_states(states: dict, envs: gym.vector.VectorEnv, rng: np.random.Generator,
                      sample_generator: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    rng.bit_generator.state = states["rng"]
    sample_generator.set_state(states["sample_generator"])
    envs.action_space.np_random.bit_generator.state = states["action_space"]


def evaluate(q_network: QNetwork, args: Args, run_dir: str, device: torch.device) -> list:
    """Greedy episodes in a fresh env seeded apart from training; returns their returns."""
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
                q_values = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device).reshape(1, -1))
            obs, reward, terminated, truncated, _ = env.step(int(q_values.argmax()))
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
CHECKPOINTS_KEPT = 2  # the latest two; at the defaults (CartPole, 10k rows of replay) a checkpoint is ≈ 0.7 MB


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
    if script != "dqn.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of dqn.py")
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
    if not 0 < args.learning_rate < np.inf or (args.max_grad_norm is not None and args.max_grad_norm <= 0):
        fail(f"--learning-rate must be > 0 and finite, --max-grad-norm > 0 (or left out: no clipping); "
             f"got {args.learning_rate}, {args.max_grad_norm}")
    if not 0.0 <= args.end_e <= args.start_e <= 1.0:  # epsilon falls (linear_schedule holds it at end_e otherwise)
        fail(f"--start-e and --end-e must satisfy 0 <= end-e <= start-e <= 1; got {args.start_e}, {args.end_e}")
    if not 0.0 <= args.exploration_fraction < np.inf:  # the share of the budget over which epsilon falls
        fail(f"--exploration-fraction must be >= 0 and finite; got {args.exploration_fraction}")
    for name in ("num_envs", "eval_episodes", "buffer_size", "batch_size", "train_frequency",
                 "target_network_frequency", "n_step"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.total_timesteps < 0:
        fail(f"--total-timesteps must be >= 0 (0 only evaluates); got {args.total_timesteps}")
    if args.total_timesteps > 0 and not 0 <= args.learning_starts < args.total_timesteps:
        fail(f"--learning-starts must be in [0, total_timesteps={args.total_timesteps}); got {args.learning_starts}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size ({args.batch_size}) must not exceed --buffer-size ({args.buffer_size})")
    if not 0.0 < args.tau <= 1.0 or not 0.0 <= args.gamma <= 1.0:
        fail(f"--tau must be in (0, 1] and --gamma in [0, 1]; got {args.tau}, {args.gamma}")
    if args.prioritized_alpha < 0 or not 0.0 <= args.prioritized_beta <= 1.0 or args.prioritized_eps <= 0:
        fail(f"--prioritized-alpha must be >= 0, --prioritized-beta in [0, 1] and --prioritized-eps > 0; got "
             f"{args.prioritized_alpha}, {args.prioritized_beta}, {args.prioritized_eps}")
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

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_size, n_actions = int(np.prod(obs_space.shape)), int(action_space.n)
    q_network = QNetwork(obs_size, n_actions, args.hidden_sizes, args.dueling).to(device)
    target_network = QNetwork(obs_size, n_actions, args.hidden_sizes, args.dueling).to(device)
    # fused: one kernel for the whole Adam step; 25% faster updates for these small networks on CPU
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    # everything with a state_dict, by name: a checkpoint saves and restores them as one
    learner = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer}
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            q_network.load_state_dict(saved["q_network"])
        except (RuntimeError, KeyError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)
    target_network.load_state_dict(q_network.state_dict())
    rb = (PrioritizedReplayBuffer(args.buffer_size, obs_size, device, args.prioritized_alpha, args.prioritized_eps)
          if args.prioritized else ReplayBuffer(args.buffer_size, obs_size, device))
    window = NStepWindow(args.n_step, args.num_envs, obs_size, args.gamma) if args.n_step > 1 else None
    one_step_discounts = np.full(args.num_envs, args.gamma)  # what every one-step transition stores
    rng = np.random.default_rng(args.seed)  # exploration
    sample_generator = torch.Generator().manual_seed(args.seed)  # replay sampling (on the host, as the buffer)

    # One torch thread: a seed then gives the same run on any core count, and a 120-84 network on one
    # observation or a 128-sample batch is too small to split (profile_dqn.py: the update's share fell
    # from 70 to 54 µs per step). Restored on return.
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

    envs.action_space.seed(args.seed)
    obs = envs.reset(seed=args.seed)[0].copy()  # (num_envs, *obs_shape), numpy; a copy: the env rewrites its own
    episodic_returns = []
    global_step, updates = 0, 0
    exploration_steps = int(args.exploration_fraction * args.total_timesteps)
    start_time = last_print = time.time()
    if checkpoint is not None:  # go on exactly where the checkpoint was written; epsilon follows from global_step
        for name, item in learner.items():
            item.load_state_dict(checkpoint["learner"][name])
        rb.load_state_dict(checkpoint["replay_buffer"])
        if window is not None:
            window.load_state_dict(checkpoint["n_step_window"])
        restore_envs(envs, checkpoint["envs"], checkpoint["obs"])
        obs = checkpoint["obs"]
        envs.episode_returns[:], envs.episode_lengths[:] = checkpoint["episode_statistics"]
        set_random_states(checkpoint["random"], envs, rng, sample_generator)
        global_step, updates, episodic_returns = checkpoint["global_step"], checkpoint["updates"], checkpoint["episodic_returns"]
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    acting_q_network = ActingQNetwork(q_network)
    try:
        while global_step < args.total_timesteps:
            # ---- act epsilon-greedily, each env on its own coin (no network call when all explore)
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            explore = rng.random(args.num_envs) < epsilon
            actions = rng.integers(n_actions, size=args.num_envs)
            if not explore.all():
                q_values = acting_q_network(obs.reshape(args.num_envs, -1).astype(np.float32, copy=False))
                actions = np.where(explore, actions, q_values.argmax(axis=1))  # q_values (num_envs, n_actions)
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            previous_step, global_step = global_step, global_step + args.num_envs

            # ---- store; on an episode end next_obs is already the reset obs: store the true final one
            real_next_obs = next_obs.copy()
            if "_final_obs" in infos:
                for i in np.flatnonzero(infos["_final_obs"]):
                    real_next_obs[i] = infos["final_obs"][i]
            if window is None:
                rb.add(obs, real_next_obs, actions, rewards, terminations, one_step_discounts)
            else:  # the n-step transitions this step completes (none, or several when an episode ends)
                rb.add(*window.push(obs, actions, rewards, real_next_obs, terminations, terminations | truncations))
            obs = next_obs.copy()  # next_obs is the env's array, which the next envs.step overwrites

            if "_episode" in infos:
                wall_time = time.time() - start_time
                for i in np.flatnonzero(infos["_episode"]):
                    episode_return, episode_length = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
                    episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                    episodic_returns.append(episode_return)
                    if figure_log.on:
                        figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                                        "charts/epsilon": epsilon}, step=global_step)

            # ---- learn: one gradient step per train_frequency env steps (whatever num_envs is); with --n-step
            # and a --learning-starts below n steps the buffer can still be empty: nothing to sample yet
            if global_step > args.learning_starts and rb.size > 0:
                for _ in range(global_step // args.train_frequency - previous_step // args.train_frequency):
                    if args.prioritized:  # beta rises linearly from prioritized_beta to 1 over training
                        beta = args.prioritized_beta + (1.0 - args.prioritized_beta) * min(global_step / args.total_timesteps, 1.0)
                        batch, b_index, b_weights = rb.sample(args.batch_size, sample_generator, beta)
                    else:
                        batch, b_index, b_weights = rb.sample(args.batch_size, sample_generator)
                    b_obs, b_actions, b_rewards, b_next_obs, b_terminations, b_discounts = batch
                    with torch.no_grad():
                        next_q_online = q_network(b_next_obs) if args.double_q else None
                        td_targets = td_target(b_rewards, b_terminations, target_network(b_next_obs), b_discounts,
                                               next_q_online)
                    q_values = q_network(b_obs).gather(1, b_actions.unsqueeze(1)).squeeze(1)  # (batch,)
                    loss_function = F.smooth_l1_loss if args.huber else F.mse_loss
                    if b_weights is None:
                        td_loss = loss_function(q_values, td_targets)
                    else:  # each sample's loss scaled by its importance weight; new priorities from its |delta|
                        td_loss = (b_weights * loss_function(q_values, td_targets, reduction="none")).mean()
                        rb.update_priorities(b_index, (td_targets - q_values).detach().cpu().numpy())
                    optimizer.zero_grad()
                    td_loss.backward()
                    if args.max_grad_norm is not None:
                        nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                    optimizer.step()
                    updates += 1
                    if device.type != "cpu":  # the acting copy follows the new weights (on CPU it views them)
                        acting_q_network = ActingQNetwork(q_network)
                    if updates % LOG_EVERY_UPDATES == 0:
                        loss_value = td_loss.item()
                        if not np.isfinite(loss_value):
                            fail(f"the TD loss became {loss_value} at step {global_step}")
                        if figure_log.on:
                            figure_log.log({"losses/td_loss": loss_value, "losses/q_values": q_values.mean().item(),
                                            "charts/SPS": global_step / max(time.time() - start_time, 1e-9)}, step=global_step)
                if global_step // args.target_network_frequency > previous_step // args.target_network_frequency:
                    soft_update(target_network, q_network, args.tau)

            # ---- checkpoint when one is due (every env's state is saved: see capture_envs)
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "dqn.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "updates": updates, "episodic_returns": episodic_returns,
                    "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "learner": {name: item.state_dict() for name, item in learner.items()},
                    "replay_buffer": rb.state_dict(), "random": random_states(envs, rng, sample_generator),
                    "n_step_window": window.state_dict() if window is not None else None,
                    "envs": capture_envs(envs), "obs": obs,
                    "episode_statistics": (envs.episode_returns.copy(), envs.episode_lengths.copy()),
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)

            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                episodes_file.flush()
                sps = global_step / (last_print - start_time)
                eta = int(max(args.total_timesteps - global_step, 0) / sps)
                print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | "
                      f"epsilon {epsilon:.3f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    envs.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"q_network": q_network.state_dict(), "target_network": target_network.state_dict(),
                    "optimizer": optimizer.state_dict(), "args": vars(args), "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(q_network, args, run_dir, device)
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
