"""On-policy first-visit Monte Carlo control (Sutton & Barto 2018, Section 5.4; Monte Carlo ES, Section 5.3).

Play a whole episode with an epsilon-soft (epsilon-greedy) policy, then walk it backwards: G <- gamma G + R,
and at the first visit of each pair (S, A) move Q(S, A) toward G by the sample average 1/N(S, A), as
the book's boxes do (--learning-rate sets a constant step instead). --exploring-starts is Monte Carlo ES:
the first action of each episode is uniformly random, then the policy is greedy. ES needs every
state-action pair to be able to start an episode; we cannot choose the start state, so it is ES only
where the env's own reset reaches every state: Blackjack deals each of its start states with
probability > 0 (all but hard 21, which only a hit reaches), so a random first action completes it;
with a fixed start state (FrozenLake) it explores that state's actions and no other states.
Book: http://incompleteideas.net/book/the-book-2nd.html.

Spaces: Discrete actions; Discrete or Tuple-of-Discrete observations (Blackjack-v1 is Tuple(Discrete(32),
Discrete(11), Discrete(2))), flattened to one table row by np.ravel_multi_index. Gymnasium registers
Blackjack-v1 with sab=True (the book's rules, Example 5.1) and no time limit; we add one, never reached.
A time-limit truncation leaves the return incomplete: its tail is bootstrapped, gamma^k v(S_T) with v the
current policy's value of the true final state; after a real termination the tail is 0.

    python algorithms/monte_carlo.py                                  # Blackjack, the book's rules
    python algorithms/monte_carlo.py --exploring-starts --total-timesteps 3000000 --save-model
    python algorithms/monte_carlo.py --env-id FrozenLake-v1 --env-kwargs '{"is_slippery": false}' --gamma 0.99
    python algorithms/monte_carlo.py --env-kwargs '{"sab": false, "natural": true}'  # a natural pays 1.5
    python algorithms/monte_carlo.py --env-id my_package.my_envs:MyEnv-v0  # imports the module that registers it
    python algorithms/monte_carlo.py --model-path runs/.../monte_carlo.npz --total-timesteps 0 --capture-video
The last line evaluates a saved table without training (and records the evaluation episodes).
"""

import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds far from the training seeds
FALLBACK_TIME_LIMIT = 500  # for envs registered without a time limit (Blackjack-v1, CliffWalking-v1)
PROGRESS_SECONDS = 5.0  # at most one console progress line this often


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
    """save the Q-table and the visit counts N(S, A) (and the arguments) to runs/{run_name}/{exp_name}.npz"""
    model_path: Optional[str] = None
    """load a saved table (.npz) before training; with --total-timesteps 0 this only evaluates it"""
    env_id: str = "Blackjack-v1"
    """the Gymnasium id, "package.module:Env-v0" too (Discrete or Tuple-of-Discrete observations, Discrete actions)"""
    env_kwargs: str = "{}"
    """JSON keyword arguments for gym.make (training, evaluation and video envs), e.g. '{"sab": false, "natural": true}'"""
    max_episode_steps: Optional[int] = None
    """episode time limit; None keeps the registered one (or 500 when the env has none)"""
    total_timesteps: int = 1_000_000
    """environment steps of training (a Blackjack episode is about 1.4 steps)"""
    gamma: float = 1.0
    """the discount factor (1: Blackjack is undiscounted in the book)"""
    learning_rate: Optional[float] = None
    """a constant step size alpha; None averages the returns, step 1/N(S, A), as the book does"""
    epsilon: float = 0.1
    """the epsilon of the epsilon-soft policy, fixed as in the book's box"""
    exploring_starts: bool = False
    """Monte Carlo ES: a uniformly random first action, then greedy (--epsilon is unused)"""
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
    # an env registered without a time limit (Blackjack-v1) gets one: an episode must end
    return env if env.spec.max_episode_steps is not None else gym.wrappers.TimeLimit(env, FALLBACK_TIME_LIMIT)


def table_dims(space: gym.Space) -> Optional[tuple]:
    """The table's axes for a Discrete or Tuple-of-Discrete observation space; None for any other."""
    if isinstance(space, gym.spaces.Discrete):
        return (int(space.n),)
    if isinstance(space, gym.spaces.Tuple) and all(isinstance(sub, gym.spaces.Discrete) for sub in space.spaces):
        return tuple(int(sub.n) for sub in space.spaces)
    return None


def table_index(obs, dims: tuple) -> int:
    """One row of the table per observation: (14, 10, 1) in Blackjack's (32, 11, 2) -> 14*22 + 10*2 + 1."""
    return int(np.ravel_multi_index(tuple(np.atleast_1d(obs)), dims))


# ---------------------------------------------------------------------------------------- Math
def epsilon_soft_probs(q_values: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(.|s) of the box in Section 5.4: epsilon/|A| for every action, plus 1 - epsilon on the
    greedy action (shared evenly between tied greedy actions, as epsilon_greedy breaks ties)."""
    greedy = q_values == q_values.max()
    return epsilon / len(q_values) + (1.0 - epsilon) * greedy / greedy.sum()


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Samples epsilon_soft_probs: a random action with probability epsilon, else greedy with
    ties broken at random (with a zero-initialised table, argmax alone would always pick action 0)."""
    if rng.random() < epsilon:
        return int(rng.integers(len(q_values)))
    return int(rng.choice(np.flatnonzero(q_values == q_values.max())))


def first_visit_mc_update(q_table, counts, states, actions, rewards, gamma, final_value, learning_rate=None) -> float:
    """The loop of the Section 5.4 box over one finished episode, t = T-1, ..., 0: G <- gamma G + R_{t+1};
    unless (S_t, A_t) occurred earlier in the episode, Q(S_t, A_t) += step (G - Q(S_t, A_t)) with step
    1/N(S_t, A_t) (the incremental sample average, Eq. 2.3) or a constant learning_rate. G starts at
    final_value: 0 after a termination, the bootstrapped value of S_T after a truncation. Returns G_0."""
    first_visit = {}
    for t, pair in enumerate(zip(states, actions)):
        first_visit.setdefault(pair, t)
    g = final_value
    for t in reversed(range(len(rewards))):
        g = gamma * g + rewards[t]
        if first_visit[states[t], actions[t]] == t:
            counts[states[t], actions[t]] += 1
            step = learning_rate if learning_rate is not None else 1.0 / counts[states[t], actions[t]]
            q_table[states[t], actions[t]] += step * (g - q_table[states[t], actions[t]])
    return g


def evaluate(q_table: np.ndarray, dims: tuple, args: Args, run_dir: str) -> list:
    """Greedy episodes in a fresh env seeded apart from training; returns their returns."""
    env = make_env(args, render_mode="rgb_array" if args.capture_video else None)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda _: True)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + EVAL_SEED_OFFSET + episode)
        episode_return, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(q_table[table_index(obs, dims)])))
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
    if args.eval_episodes < 1:
        fail(f"--eval-episodes must be >= 1; got {args.eval_episodes}")
    if not 0.0 <= args.gamma <= 1.0 or not 0.0 <= args.epsilon <= 1.0:
        fail(f"--gamma and --epsilon must be in [0, 1]; got {args.gamma}, {args.epsilon}")
    if args.learning_rate is not None and not 0.0 < args.learning_rate <= 1.0:
        fail(f"--learning-rate must be in (0, 1] (or None: sample averages); got {args.learning_rate}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs must be a JSON object ({error}); got {args.env_kwargs!r}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object such as '{{\"sab\": false}}'; got {args.env_kwargs!r}")


def load_table(args: Args, shape: tuple) -> tuple:
    """The Q-table and visit counts saved by --save-model (an .npz holding them and the arguments they
    were trained with)."""
    try:
        with np.load(args.model_path) as saved:
            q_table, counts, saved_args = saved["q_table"], saved["counts"], json.loads(str(saved["args"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as error:  # not an .npz of this script
        fail(f"--model-path {args.model_path} is not a table saved by monte_carlo.py (.npz): {error}")
    if q_table.shape != shape or counts.shape != shape:
        fail(f"--model-path holds tables of shape {q_table.shape} and {counts.shape}; {args.env_id} needs {shape}")
    # Another env id or other env kwargs with the same spaces are allowed (a robustness check is a reason
    # to want it) but said aloud, since the returns are then not those of the env the table learned in.
    saved_env = (saved_args.get("env_id"), json.loads(saved_args.get("env_kwargs", "{}")))
    current = (args.env_id, json.loads(args.env_kwargs))
    if saved_env != current:
        print(f"warning: --model-path was trained in {saved_env[0]} with env kwargs {saved_env[1]} and is now run in "
              f"{current[0]} with {current[1]}: its returns are those of this env", file=sys.stderr)
    return q_table, counts


def train(args: Args) -> dict:
    check_args(args)
    env = make_env(args)
    dims = table_dims(env.observation_space)
    if dims is None or not isinstance(env.action_space, gym.spaces.Discrete):
        fail(f"monte_carlo.py needs Discrete (or Tuple of Discrete) observations and Discrete actions; {args.env_id} "
             f"has {env.observation_space} observations and {env.action_space} actions. Try reinforce.py.")

    q_table = np.zeros((int(np.prod(dims)), int(env.action_space.n)))  # (n_states, n_actions)
    counts = np.zeros_like(q_table)  # N(S, A): first visits so far, the sample average's denominator
    if args.model_path is not None:
        q_table, counts = load_table(args, q_table.shape)

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
    states, actions, rewards = [], [], []  # the current episode: S_t, A_t, R_{t+1}
    episodic_returns = []
    start_time = last_print = time.time()
    global_step = 0
    try:
        for global_step in range(1, args.total_timesteps + 1):
            state = table_index(obs, dims)
            epsilon = args.epsilon
            if args.exploring_starts:  # Section 5.3: every start pair has probability > 0, then greedy
                epsilon = 1.0 if not states else 0.0
            action = epsilon_greedy(q_table[state], epsilon, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            states.append(state)
            actions.append(action)
            rewards.append(float(reward))
            if terminated or truncated:
                # After a truncation the episode would have gone on: its missing tail is the value of
                # the true final state under the policy (greedy for ES, epsilon-soft otherwise).
                final_value = 0.0
                if truncated and not terminated:
                    final_q = q_table[table_index(obs, dims)]
                    tail_epsilon = 0.0 if args.exploring_starts else args.epsilon
                    final_value = float(epsilon_soft_probs(final_q, tail_epsilon) @ final_q)
                g = first_visit_mc_update(q_table, counts, states, actions, rewards, args.gamma, final_value,
                                          args.learning_rate)
                if not np.isfinite(g):
                    fail(f"the return G became {g} at step {global_step}")
                episode_return, episode_length = sum(rewards), len(rewards)
                wall_time = time.time() - start_time
                episodes_csv.writerow([global_step, episode_return, episode_length, f"{wall_time:.3f}"])
                episodic_returns.append(episode_return)
                if figure_log.on:
                    figure_log.log({"charts/episodic_return": episode_return, "charts/episodic_length": episode_length,
                                    "charts/SPS": global_step / max(wall_time, 1e-9)}, step=global_step)
                obs, _ = env.reset()
                states, actions, rewards = [], [], []
                if time.time() - last_print > PROGRESS_SECONDS:
                    last_print = time.time()
                    episodes_file.flush()  # with each progress line, not per episode: episodes can be 1 step long
                    sps = global_step / wall_time
                    eta = int((args.total_timesteps - global_step) / sps)
                    print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 1000) "
                          f"{np.mean(episodic_returns[-1000:]):.3f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    # An episode still running when the budget ends has no return yet: it updates nothing.
    episodes_file.close()
    env.close()
    wall_time = time.time() - start_time
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.npz")
        # the counts let a reload resume the averages; the args as text: no pickle to load
        np.savez(model_file, q_table=q_table, counts=counts, args=json.dumps(vars(args)))
        print(f"saved the Q-table and visit counts to {model_file}")
    eval_returns = evaluate(q_table, dims, args, run_dir)
    summary = {"args": vars(args), "global_step": global_step, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "sps": sps, "wall_time": wall_time,
               "versions": {"python": platform.python_version(), "gymnasium": gym.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/return_mean": summary["eval_return_mean"], "eval/return_std": summary["eval_return_std"]},
                   step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} steps, {len(episodic_returns):,} episodes in {wall_time:.1f}s ({sps:,.0f} SPS) | "
          f"greedy evaluation {summary['eval_return_mean']:.3f} ± {summary['eval_return_std']:.3f} over "
          f"{args.eval_episodes} episodes")
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time, "q_table": q_table, "counts": counts, "table_dims": dims}


if __name__ == "__main__":
    train(tyro.cli(Args))
