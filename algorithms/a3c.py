"""Asynchronous advantage actor-critic, A3C (Mnih et al. 2016, Algorithm S3 of the supplementary).

num_workers processes each play their own env and share one model and one optimizer (Hogwild: no
locks around the weights). A worker copies the shared weights, plays up to num_steps steps (t_max),
computes the n-step returns R bootstrapped from V(s_t+n) (0 after a termination), takes the gradient
of -log pi(a|s) * (R - V) + vf_coef * (R - V)^2 - ent_coef * H[pi] on its own copy, and applies that
gradient to the shared weights with the shared optimizer. Paper: https://arxiv.org/abs/1602.01783.

The optimizer is the paper's shared RMSProp (Sec. 4; Eq. S2-S3 of Supp. Sec. 7: g <- alpha g + (1 - alpha)
grad^2 with g in shared memory, updated by every worker), or a shared Adam with --optimizer adam. Its step is
PyTorch's and SB3's, theta <- theta - lr grad / (sqrt(g) + eps), where the paper writes sqrt(g + eps): with
eps 1e-5 inside the root no parameter moves faster than lr grad / 0.003, and on CartPole that froze a dead
critic for good (see SharedRMSprop). Defaults: lr 7e-4, alpha 0.99, eps 1e-5, clipping 0.5, vf_coef 0.5 and
64-64 tanh actor and critic as a2c.py (SB3 / RL Zoo CartPole); the linear learning-rate decay to 0 as the
paper; no entropy bonus (a2c.py and the Zoo's CartPole: with the paper's 0.01, CartPole seed 2 stayed at a
greedy 267 after 500k steps, 500 without); t_max 20, not the paper's Atari 5: at 5 on CartPole (200k steps,
4 workers) greedy returns were 181-360 for lr 1e-4 to 1e-3, at 20 500 (also the t_max of the widely used
PyTorch A3C ports). 4 workers: see num_workers.

A worker's episode ends its rollout (as in the paper): a time-limit truncation is bootstrapped from
V(true final obs), which a single env without autoreset still holds; only a termination drops it.
Runs are not reproducible: the workers race on the shared weights, so the same seed gives other
episodes (with --num-workers 1 they are reproducible: REPRODUCIBLE_ARGS).
CPU only: Hogwild shares the weights through CPU shared memory. Works with the spawn, forkserver and
fork start methods; a worker builds its own env from the arguments.

Spaces: Box (vector) observations, Discrete actions.

    python algorithms/a3c.py                                          # CartPole-v1, 500k steps
    python algorithms/a3c.py --num-workers 8 --optimizer adam --learning-rate 1e-4
    python algorithms/a3c.py --env-id my_package.my_envs:MyEnv-v0  # imports my_package.my_envs, which registers it
    python algorithms/a3c.py --model-path runs/.../a3c.pt --total-timesteps 0 --capture-video
The last line evaluates a saved model without training (and records the evaluation episodes).

Long runs resume: `--checkpoint-every 100000 --checkpoint-dir ~/checkpoints` writes, once every worker has
finished the episode it is in after each 100,000 steps (the workers wait for each other at that episode
boundary, so no env's state is caught mid-episode), the shared weights and optimizer state, the step
counter, the episodes so far and each worker's random states (its env's included); rerunning the same
command with `--resume PATH` continues it in its run directory. With one worker the resumed run is
bitwise the one that never stopped; with more, the workers race after the resume as in any run.
"""

import copy
import csv
import glob
import json
import os
import pickle
import platform
import queue
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import tyro
from torch.distributions import Categorical

DETERMINISTIC = False  # the same seed gives other episodes (workers race on the shared weights): for the harness
REPRODUCIBLE_ARGS = ["--num-workers", "1"]  # ... except with one worker (the harness checks these runs instead)
EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
WORKER_SEED_STRIDE = 1_000_000  # worker_seed's gap between workers (seed + worker id let seeds 1-3 share workers)
PROGRESS_SECONDS = 5.0  # at most one console progress line this often
LOG_EVERY_UPDATES = 500  # worker 0 sends its losses to the figures every this many updates
QUEUE_POLL_SECONDS = 0.1  # how long the main process waits for a worker's message before checking on them
RMSPROP_ALPHA = 0.99  # the decay of the squared-gradient average (the paper and SB3)
OPTIMIZER_EPS = 1e-5  # SB3's RMSprop eps, added to the root as PyTorch and SB3 do (see SharedRMSprop)
ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba 2015


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of the initial weights and the evaluation; worker i seeds its env and actions with worker_seed(seed, i)"""
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
    """write a checkpoint to resume from at the first episode boundary of every worker after every this many
    environment steps (0: never); the latest two are kept"""
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
    """environment steps of training, all workers together"""
    num_workers: int = 4
    """worker processes, each with its own env (the paper: 16 on 16 cores); 4 made the CartPole bar on 2 cores"""
    start_method: Literal["spawn", "forkserver", "fork"] = "spawn"
    """how worker processes start (torch.multiprocessing); spawn works everywhere"""
    learning_rate: float = 7e-4
    """optimizer step size"""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """the paper's shared RMSProp, or a shared Adam"""
    num_steps: int = 20
    """t_max: steps per worker update, fewer when an episode ends (the n of the n-step return)"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over training (as the paper)"""
    gamma: float = 0.99
    """the discount factor"""
    ent_coef: float = 0.0
    """weight of the entropy bonus (beta of the paper, which used 0.01)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """clip the norm of each worker's gradient"""
    eval_episodes: int = 10
    """greedy evaluation episodes at the end"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Env
def make_env(args: Args, render_mode: Optional[str] = None) -> gym.Env:
    """One env. Any id gym.make takes works, "package.module:Env-v0" included (gym.make imports the module,
    which registers the env). render_mode is passed only when asked for: not every constructor takes it."""
    env = gym.make(args.env_id, **json.loads(args.env_kwargs), **({"render_mode": render_mode} if render_mode else {}))
    return gym.wrappers.FlattenObservation(env) if args.flatten_obs else env


def make_checked_env(args: Args) -> gym.Env:
    """The first env, made in the main process, or one line and exit 2 when the id is unknown or making it raises."""
    if ":" in args.env_id and os.getcwd() not in sys.path:
        # a script's import path starts at its own folder: let "my_envs:Env-v0" find the package my_envs in the
        # working directory, as `python -m` would (spawned workers start with this sys.path too)
        sys.path.append(os.getcwd())
    try:
        return make_env(args)
    except gym.error.UnregisteredEnv as error:  # no such id, namespace or version; Gymnasium suggests one
        fail(f"unknown --env-id {args.env_id}: {error}")
    except Exception as error:  # the env's module or constructor raised (a bad kwarg, a missing package, a bug)
        fail(f"could not make {args.env_id} with --env-kwargs {args.env_kwargs}: {type(error).__name__}: "
             f"{str(error).splitlines()[0] if str(error) else ''}")


def check_spaces(args: Args, obs_space: gym.Space, action_space: gym.Space) -> None:
    """Refuse, with one line saying what fits instead, spaces this script cannot learn from."""
    if isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
        fail(f"a3c.py needs a flat Box observation; {args.env_id} has {type(obs_space).__name__} observations. "
             f"Try --flatten-obs (one vector of all their parts).")
    if isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) >= 2:
        fail(f"a3c.py needs vector observations for its MLP; {args.env_id} has {obs_space.shape} uint8 images "
             f"({int(np.prod(obs_space.shape)):,} inputs once flattened). Try the env's vector-observation variant or a CNN agent.")
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Discrete):
        fail(f"a3c.py needs Box observations and Discrete actions; {args.env_id} has {obs_space} observations "
             f"and {action_space} actions. Try " + ("q_learning.py." if isinstance(obs_space, gym.spaces.Discrete)
                                                   else "reinforce.py."))


def network_input(raw_obs) -> torch.Tensor:
    """One observation as the networks' (1, obs_size) float32 input."""
    return torch.as_tensor(np.asarray(raw_obs), dtype=torch.float32).reshape(1, -1)


# ---------------------------------------------------------------------------------------- Agent
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (as SB3's policies)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    """Separate actor (logits) and critic (V) networks, 64-64 tanh each (as a2c.py: on small vector
    observations a shared trunk lets the value loss pull the policy's features around)."""

    def __init__(self, obs_size: int, n_actions: int):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        # A small last layer starts the policy close to uniform.
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def sample_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Draw a ~ pi(.|s) for acting: Categorical.sample's own draw (torch.multinomial on the softmax) without
        building the distribution, whose argument checks cost more than these small networks."""
        return torch.multinomial(torch.softmax(self.actor(obs), dim=-1), 1, replacement=True).squeeze(-1)

    def get_action_and_value(self, obs: torch.Tensor, action: Optional[torch.Tensor] = None):
        """Sample an action (or score a given one): action, log pi(a|s), entropy, V(s)."""
        dist = Categorical(logits=self.actor(obs))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.get_value(obs)


# ---------------------------------------------------------------------------------------- Shared optimizers
class SharedRMSprop(torch.optim.Optimizer):
    """RMSProp whose squared-gradient averages every worker reads and writes (the paper's Shared RMSProp,
    Supp. Sec. 7, Eq. S2-S3): g <- alpha g + (1 - alpha) grad^2; theta <- theta - lr grad / (sqrt(g) + eps).
    The averages are made before the workers start and moved into shared memory, so each worker's copy of
    this optimizer (pickled to it) updates the same ones; the paper found sharing them more robust.

    eps goes outside the root, as in torch.optim.RMSprop (this step is exactly its step) and SB3's A2C; the
    paper's Eq. S3 has sqrt(g + eps). Why it matters here: on CartPole the critic must output returns near
    100, which it first reaches by saturating its tanh units; a saturated unit's gradient is tiny (1e-6 and
    below), and sqrt(g + 1e-5) >= 0.003 turns that into a step of lr x 3e-4: the unit stays saturated, the
    critic reads 99.9 in every state, only the rollouts that end an episode carry an advantage, and the policy
    stops improving (the cart runs off the track at step ~130, every episode).
    With sqrt(g) + 1e-5 the same gradient moves the unit about 300 times faster (lr / 10 at a steady
    grad 1e-6). Measured at 500k steps: 7 runs of 7 (seeds 1-4, then the benchmark's seeds 1-3) ended at a
    greedy 500. With sqrt(g + eps) most runs did too (9 of 10 in an earlier probe), but seed 2 ended at 150
    in the benchmark and at 141 when run again.
    Early on it is a little slower: greedy >= 200 after 30k steps in 8 runs of 9, against 6 of 6."""

    def __init__(self, params, lr: float, alpha: float = RMSPROP_ALPHA, eps: float = OPTIMIZER_EPS):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param]["square_avg"] = torch.zeros_like(param).share_memory_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                square_avg = self.state[param]["square_avg"]
                square_avg.mul_(group["alpha"]).addcmul_(param.grad, param.grad, value=1 - group["alpha"])
                param.addcdiv_(param.grad, square_avg.sqrt().add_(group["eps"]), value=-group["lr"])


class SharedAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) with its moments and its step counters in shared memory, made
    before the workers start: all workers update one set of moments, and the bias correction counts the
    updates of all workers together."""

    def __init__(self, params, lr: float, betas: tuple = ADAM_BETAS, eps: float = OPTIMIZER_EPS):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param].update(step=torch.zeros(()).share_memory_(),
                                         exp_avg=torch.zeros_like(param).share_memory_(),
                                         exp_avg_sq=torch.zeros_like(param).share_memory_())

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(param.grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                step = state["step"].item()
                denominator = (state["exp_avg_sq"] / (1 - beta2 ** step)).sqrt_().add_(group["eps"])
                param.addcdiv_(state["exp_avg"], denominator, value=-group["lr"] / (1 - beta1 ** step))


def make_optimizer(agent: Agent, args: Args) -> torch.optim.Optimizer:
    if args.optimizer == "rmsprop":
        return SharedRMSprop(agent.parameters(), lr=args.learning_rate)
    return SharedAdam(agent.parameters(), lr=args.learning_rate)


# ---------------------------------------------------------------------------------------- Math
def n_step_returns(rewards: torch.Tensor, bootstrap_value: float, gamma: float) -> torch.Tensor:
    """R_t = r_t + gamma * R_t+1 backwards from R_n = bootstrap_value (Algorithm S3; Sutton & Barto 2018,
    Eq. 7.1); rewards: (n,)."""
    returns = torch.zeros_like(rewards)
    next_return = bootstrap_value
    for t in reversed(range(rewards.shape[0])):
        next_return = rewards[t] + gamma * next_return
        returns[t] = next_return
    return returns


def a3c_loss(agent: Agent, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, args: Args) -> tuple:
    """The loss whose gradient Algorithm S3 accumulates (averaged over the rollout, as a2c.py): the policy
    gradient weighted by the advantage R - V (V held fixed there), the value regression, the entropy bonus."""
    _, logprob, entropy, value = agent.get_action_and_value(obs, actions)
    advantages = returns - value.detach()
    pg_loss = -(advantages * logprob).mean()
    v_loss = ((value - returns) ** 2).mean()  # no 1/2 (as the paper's d(R - V)^2/d theta_v, and SB3)
    entropy_loss = entropy.mean()
    return pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss, pg_loss, v_loss, entropy_loss


def update_shared(local_agent: Agent, shared_agent: Agent, optimizer: torch.optim.Optimizer, obs: torch.Tensor,
                  actions: torch.Tensor, returns: torch.Tensor, args: Args) -> dict:
    """One worker update: the gradient on the worker's own copy, handed to the shared weights and applied.
    The hand-off copies the fresh gradient every time. (The widely copied `if shared.grad is not None: return;
    shared._grad = local.grad` relied on the shared optimizer's zero_grad() zeroing the local gradient tensors
    it aliased; since torch 2.0 zero_grad() sets the shared gradients to None instead, the local gradients are
    never cleared, and the shared optimizer applies the sum of all updates so far: 1x, 2x, 3x ...)"""
    loss, pg_loss, v_loss, entropy_loss = a3c_loss(local_agent, obs, actions, returns, args)
    local_agent.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(local_agent.parameters(), args.max_grad_norm)
    for local_param, shared_param in zip(local_agent.parameters(), shared_agent.parameters()):
        shared_param.grad = local_param.grad.clone()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"losses/loss": loss.item(), "losses/policy_loss": pg_loss.item(), "losses/value_loss": v_loss.item(),
            "losses/entropy": entropy_loss.item()}


# ---------------------------------------------------------------------------------------- Worker
def worker_seed(seed: int, worker_id: int) -> int:
    """The seed of worker worker_id's env and action sampling: worker 0 plays the run's own seed, so one worker
    runs as a seeded single-process script would, and no two (seed, worker) pairs below the stride share one."""
    return seed + worker_id * WORKER_SEED_STRIDE


def claim_steps(steps_claimed, wanted: int, total_timesteps: int) -> int:
    """Reserve up to `wanted` of the remaining budget on the shared counter (mp.Value); 0 when it is spent."""
    with steps_claimed.get_lock():
        granted = max(0, min(wanted, total_timesteps - steps_claimed.value))
        steps_claimed.value += granted
    return granted


def collect_rollout(env: gym.Env, agent: Agent, next_obs, obs: torch.Tensor, actions: torch.Tensor,
                    rewards: torch.Tensor, num_steps: int) -> tuple:
    """Play up to num_steps steps, stopping at an episode's end, into obs, actions and rewards (rows 0..taken-1).
    Returns taken, the last observation (the true final one when the episode ended: no autoreset here),
    terminated, truncated and the last info."""
    for step in range(num_steps):
        obs[step] = network_input(next_obs)[0]
        with torch.inference_mode():
            action = agent.sample_action(obs[step:step + 1])
        next_obs, reward, terminated, truncated, info = env.step(int(action))
        actions[step], rewards[step] = int(action), float(reward)
        if terminated or truncated:
            break
    return step + 1, next_obs, terminated, truncated, info


def bootstrap_value(agent: Agent, last_obs, terminated: bool) -> float:
    """V(s_t+n) after a full rollout, V(true final obs) after a truncation, 0 after a termination."""
    if terminated:
        return 0.0
    with torch.inference_mode():
        return agent.get_value(network_input(last_obs)).item()


def worker_state(env: gym.Env, updates: int) -> dict:
    """What a worker needs to go on after a checkpoint, taken at an episode boundary (before the next reset):
    its process's random streams (torch's draws the actions), its env's (the next reset draws from it) and
    its update count. Plain numpy and python objects: they travel through the message queue."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state().numpy(),
            "env": copy.deepcopy(env.unwrapped.np_random.bit_generator.state), "updates": updates}


def set_worker_state(state: dict, env: gym.Env) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(torch.from_numpy(state["torch"]))
    env.unwrapped.np_random.bit_generator.state = state["env"]


def main_process_alive(parent: int) -> bool:
    """In a worker: whether the main process still runs. One killed outright (SIGKILL, out of memory) sets no
    `stop`, so the workers look: under fork and spawn a worker is re-parented when the main process dies; under
    forkserver its parent, the server, lives on while the workers do, but the pipe that multiprocessing keeps
    from the main process to each child (the parent's sentinel) closes. (Under fork that pipe alone would not
    do: each worker forked later inherits the main process's end of the earlier workers' pipes.)"""
    return os.getppid() == parent and mp.parent_process().is_alive()


def worker(worker_id: int, args: Args, obs_size: int, n_actions: int, shared_agent: Agent,
           optimizer: torch.optim.Optimizer, steps_claimed, steps_taken, messages, stop, pause, proceed,
           resume_state: Optional[dict]) -> None:
    """One actor-learner of Algorithm S3, in its own process: sync, play, compute the gradient, apply it to the
    shared weights, until the shared budget is spent or `stop` is set. Sends ("episode", step, return, length),
    ("figures", step, dict) and ("error", text) to the main process, which writes every file. While `pause` is
    set (a checkpoint is due), the worker ends its episode, sends ("paused", worker_id, worker_state) and waits
    for `proceed`; resume_state (from a checkpoint) puts it back at that episode boundary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it sets `stop`
    parent = os.getppid()  # the main process (fork, spawn) or the fork server (forkserver)
    torch.set_num_threads(1)  # tiny networks; each worker is one core's worth of work (as the paper)
    seed = worker_seed(args.seed, worker_id)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = gym.wrappers.RecordEpisodeStatistics(make_env(args))
    local_agent = Agent(obs_size, n_actions)
    obs = torch.zeros((args.num_steps, obs_size))  # (num_steps, obs_size)
    actions = torch.zeros(args.num_steps, dtype=torch.long)
    rewards = torch.zeros(args.num_steps)
    next_obs, _ = env.reset(seed=seed)
    updates = 0
    if resume_state is not None:  # go on from the episode boundary where this worker stopped for the checkpoint
        set_worker_state(resume_state, env)
        updates = resume_state["updates"]
        next_obs, _ = env.reset()
    while not stop.is_set() and main_process_alive(parent):
        granted = claim_steps(steps_claimed, args.num_steps, args.total_timesteps)
        if granted == 0:
            break
        if args.anneal_lr:  # this worker's copy of the optimizer; every worker anneals by the shared counter
            optimizer.param_groups[0]["lr"] = args.learning_rate * max(0.0, 1.0 - steps_claimed.value / args.total_timesteps)
        with torch.no_grad():  # theta' <- theta (a copy: the shared weights change under us while we play)
            for local_param, shared_param in zip(local_agent.parameters(), shared_agent.parameters()):
                local_param.copy_(shared_param)
        taken, next_obs, terminated, truncated, info = collect_rollout(env, local_agent, next_obs, obs, actions,
                                                                       rewards, granted)
        if taken < granted:  # the episode ended early: hand the unused steps back
            with steps_claimed.get_lock():
                steps_claimed.value -= granted - taken
        # steps_claimed runs ahead of the steps played by every claim still in flight; logs read steps_taken,
        # counted and read under one lock, so that the rows' steps never go back or pass a checkpoint's
        with steps_taken.get_lock():
            steps_taken.value += taken
            step = steps_taken.value
        returns = n_step_returns(rewards[:taken], bootstrap_value(local_agent, next_obs, terminated), args.gamma)
        losses = update_shared(local_agent, shared_agent, optimizer, obs[:taken], actions[:taken], returns, args)
        updates += 1
        loss = losses["losses/loss"]
        if not np.isfinite(loss):
            messages.put(("error", f"the A3C loss became {loss} at step {step} (worker {worker_id})"))
            break
        if worker_id == 0 and updates % LOG_EVERY_UPDATES == 0:
            messages.put(("figures", step, {"charts/learning_rate": optimizer.param_groups[0]["lr"], **losses}))
        if terminated or truncated:
            messages.put(("episode", step, float(info["episode"]["r"]), int(info["episode"]["l"])))
            if pause.is_set():  # a checkpoint is due: hand over this worker's state and wait until it is written
                messages.put(("paused", worker_id, worker_state(env, updates)))
                while not proceed.wait(QUEUE_POLL_SECONDS) and not stop.is_set() and main_process_alive(parent):
                    pass
            next_obs, _ = env.reset()
    if not main_process_alive(parent):  # no one will read what is still queued: exit without waiting to flush it
        messages.cancel_join_thread()
    env.close()


def start_workers(args: Args, obs_size: int, n_actions: int, shared_agent: Agent, optimizer,
                  checkpoint: Optional[dict]) -> tuple:
    """num_workers processes of `worker` (each from its state in the checkpoint, when resuming); returns them,
    the shared step counters (claimed, taken), the message queue and the stop, pause and proceed events.
    Everything handed over pickles (spawn and forkserver pickle it; fork inherits it)."""
    context = mp.get_context(args.start_method)
    steps_claimed = context.Value("q", checkpoint["global_step"] if checkpoint else 0)  # int64 with its own lock
    steps_taken = context.Value("q", checkpoint["global_step"] if checkpoint else 0)  # equal at a checkpoint
    messages, stop, pause, proceed = context.Queue(), context.Event(), context.Event(), context.Event()
    resume_states = checkpoint["workers"] if checkpoint else [None] * args.num_workers
    # ignore Ctrl-C while the workers start, so that a spawned interpreter inherits the ignoring
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        workers = [context.Process(target=worker, args=(worker_id, args, obs_size, n_actions, shared_agent, optimizer,
                                                        steps_claimed, steps_taken, messages, stop, pause, proceed,
                                                        resume_states[worker_id]), daemon=True)
                   for worker_id in range(args.num_workers)]
        for process in workers:
            process.start()
    finally:
        signal.signal(signal.SIGINT, handler)
    return workers, steps_claimed, steps_taken, messages, stop, pause, proceed


def wait_for_workers(workers: list, messages, stop, handle) -> None:
    """Pass every message to handle(message) (None when none came for a while) until all workers have exited;
    a worker that dies stops the others."""
    while any(process.is_alive() for process in workers):
        try:
            handle(messages.get(timeout=QUEUE_POLL_SECONDS))
        except queue.Empty:
            handle(None)
        if any(process.exitcode not in (None, 0) for process in workers):
            stop.set()
    while not messages.empty():
        handle(messages.get())


def evaluate(agent: Agent, args: Args, run_dir: str) -> list:
    """Greedy (argmax) episodes in a fresh env seeded apart from training; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            with torch.inference_mode():
                logits = agent.actor(network_input(obs))
            obs, reward, terminated, truncated, _ = env.step(int(logits.argmax()))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


# ---------------------------------------------------------------------------------------- Checkpoints
# A run that started from a saved model (--model-path) resumes without it: --resume refuses the two together,
# and the checkpoint holds the weights reached since.
ARGS_A_RESUME_MAY_CHANGE = {"resume", "checkpoint_every", "checkpoint_dir", "track", "tensorboard", "wandb_project_name",
                            "wandb_entity", "model_path", "capture_video", "save_model", "start_method"}
CHECKPOINTS_KEPT = 2  # the latest two; a checkpoint of the default 64-64 networks is ≈ 0.1 MB


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
    if script != "a3c.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of a3c.py")
    changed = [f"--{name.replace('_', '-')} {saved_args.get(name)} (now {value})" for name, value in vars(args).items()
               if name not in ARGS_A_RESUME_MAY_CHANGE and saved_args.get(name) != value]
    if changed:
        fail(f"--resume needs the run's own arguments; the checkpoint was made with {', '.join(changed)}")
    return checkpoint


def load_shared_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """The saved optimizer state copied into the shared tensors the optimizer made before the workers start
    (Optimizer.load_state_dict would put new tensors in their place, which the workers would not share)."""
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for index, param in enumerate(params):
        for name, value in state_dict["state"][index].items():
            optimizer.state[param][name].copy_(value)


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
    # np.random.seed takes [0, 2**32 - 1], and worker i seeds it with worker_seed(seed, i)
    if not 0 <= args.seed <= 2**32 - 1 - (args.num_workers - 1) * WORKER_SEED_STRIDE:
        fail(f"--seed must be in [0, 2**32 - 1 - (num_workers - 1) x {WORKER_SEED_STRIDE:,}]: worker i seeds numpy "
             f"with seed + i x {WORKER_SEED_STRIDE:,}; got {args.seed}")
    if not 0 < args.learning_rate < np.inf or args.max_grad_norm <= 0:  # a negative step or clip climbs the loss; 0 learns nothing
        fail(f"--learning-rate must be > 0 and finite, --max-grad-norm > 0; got {args.learning_rate}, {args.max_grad_norm}")
    for name in ("num_workers", "num_steps", "eval_episodes"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.total_timesteps < 0:
        fail(f"--total-timesteps must be 0 (only evaluate) or more; got {args.total_timesteps}")
    if not 0.0 <= args.gamma <= 1.0:
        fail(f"--gamma must be in [0, 1]; got {args.gamma}")
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
    first_env = make_checked_env(args)
    check_spaces(args, first_env.observation_space, first_env.action_space)
    obs_size, n_actions = int(np.prod(first_env.observation_space.shape)), int(first_env.action_space.n)
    first_env.close()  # each worker makes its own

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    shared_agent = Agent(obs_size, n_actions)
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location="cpu")
            shared_agent.load_state_dict(saved["agent"])
        except (RuntimeError, KeyError, TypeError, AttributeError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.env_id} with these args: {str(error).splitlines()[0]}")
        warn_if_env_differs(saved.get("args", {}), args)
    shared_agent.share_memory()  # the workers write the weights in place (Hogwild, Recht et al. 2011)
    optimizer = make_optimizer(shared_agent, args)
    if checkpoint is not None:  # into the shared tensors, before the workers start
        shared_agent.load_state_dict(checkpoint["agent"])
        load_shared_optimizer_state(optimizer, checkpoint["optimizer"])

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
    episodic_returns, errors = (checkpoint["episodic_returns"] if checkpoint else []), []
    paused_states = {}  # worker id -> its state, from the workers waiting for a checkpoint to be written
    start_time = last_print = time.time()  # wall time and SPS include the workers' start
    if checkpoint is not None:
        start_time -= checkpoint["wall_time"]  # the clock covers the whole run
    # steps_claimed is only held here: the spawned workers unpickle its lock, which must outlive their start
    workers, steps_claimed, global_step, messages, stop, pause, proceed = \
        start_workers(args, obs_size, n_actions, shared_agent, optimizer, checkpoint) \
        if args.total_timesteps > 0 else ([], None, mp.Value("q", 0), None, None, None, None)
    next_checkpoint_step = next_checkpoint(global_step.value, args.checkpoint_every)

    def write_paused_checkpoint() -> None:
        """Every worker waits at an episode boundary: the shared weights, optimizer and counter are still."""
        episodes_file.flush()
        with open(episodes_path, newline="") as file:
            episodes_so_far = file.read()
        path = write_checkpoint({
            "script": "a3c.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
            "global_step": global_step.value, "episodic_returns": episodic_returns, "episodes_csv": episodes_so_far,
            "wall_time": time.time() - start_time, "agent": shared_agent.state_dict(),
            "optimizer": optimizer.state_dict(), "workers": [paused_states[i] for i in range(args.num_workers)],
            "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
        }, checkpoint_dir, global_step.value)
        print(f"checkpoint at step {global_step.value:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")

    def handle(message) -> None:
        """What a worker sent: an episode (to episodes.csv), figures, an error, or its state as it waits for a
        checkpoint; a checkpoint started when one is due and written once every worker waits; now and then, progress."""
        nonlocal last_print, next_checkpoint_step
        kind = message[0] if message is not None else None
        if kind == "episode":
            _, step, episode_return, episode_length = message
            episodes_csv.writerow([step, episode_return, episode_length, f"{time.time() - start_time:.3f}"])
            episodic_returns.append(episode_return)
            if figure_log.on:
                figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length}, step)
        elif kind == "figures":
            figure_log.log(message[2], message[1])
        elif kind == "error":  # stop every worker; the run fails once they are gone
            errors.append(message[1])
            stop.set()
        elif kind == "paused":
            paused_states[message[1]] = message[2]
        if pause is not None and pause.is_set():
            if all(i in paused_states or not process.is_alive() for i, process in enumerate(workers)):
                # all waiting (or gone: the budget ran out or the run stops, and there is nothing to resume)
                if len(paused_states) == args.num_workers:
                    write_paused_checkpoint()
                next_checkpoint_step = next_checkpoint(global_step.value, args.checkpoint_every)
                paused_states.clear()
                pause.clear()
                proceed.set()
        elif args.checkpoint_every and next_checkpoint_step <= global_step.value < args.total_timesteps:
            proceed.clear()
            pause.set()  # each worker stops at the end of its episode
        if time.time() - last_print > PROGRESS_SECONDS and global_step.value > 0:
            last_print = time.time()
            episodes_file.flush()
            sps = global_step.value / (time.time() - start_time)
            eta = int(max(args.total_timesteps - global_step.value, 0) / max(sps, 1e-9))
            print(f"step {global_step.value:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                  f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | "
                  f"ETA {eta // 60}:{eta % 60:02d}", flush=True)

    try:
        if workers:  # none when only evaluating
            wait_for_workers(workers, messages, stop, handle)
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step.value:,}: the workers finish their rollout, then evaluating and saving")
        stop.set()
        wait_for_workers(workers, messages, stop, handle)
    episodes_file.close()
    if errors:
        fail(errors[0])
    crashed = [f"worker {i} (exit code {process.exitcode})" for i, process in enumerate(workers) if process.exitcode]
    if crashed:
        fail(f"{', '.join(crashed)} stopped with an error; see its traceback above")
    wall_time = time.time() - start_time
    sps = global_step.value / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"agent": shared_agent.state_dict(), "optimizer": optimizer.state_dict(), "args": vars(args),
                    "global_step": global_step.value}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate(shared_agent, args, run_dir)  # greedy, here, after the workers have stopped
    summary = {"args": vars(args), "global_step": global_step.value, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__,
                            "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"charts/SPS": sps, "eval/return_mean": summary["eval_return_mean"],
                    "eval/return_std": summary["eval_return_std"]}, step=global_step.value)
    figure_log.close()
    print(f"{run_name}: {global_step.value:,} steps in {wall_time:.1f}s ({sps:,.0f} SPS) | greedy evaluation "
          f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time}


if __name__ == "__main__":
    train(tyro.cli(Args))
