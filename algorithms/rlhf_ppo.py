"""RLHF, stage 3: PPO fine-tuning of the policy against the reward model, with a per-token KL penalty to
the frozen SFT reference.

Each iteration samples completions of fresh prompts from the policy; each token is an action. The reward
of a token is -beta (log pi(a_t|s_t) - log pi_ref(a_t|s_t)), and the completion's last token also
receives the reward model's score (normalised by the mean and spread it had on the reference's samples):
the KL-penalised reward of Ziegler et al. 2019 (Eq. 2) and Ouyang et al. 2022 (Eq. 2). A value head on
the policy's GRU estimates the return before each token; advantages come from GAE over the tokens of a
completion (gamma 1: the episode is the completion, and it ends where it ends), and the update is PPO's
clipped surrogate with a clipped value loss. --adaptive-kl adjusts beta toward a target KL per
completion (Ziegler et al. 2019, Section 2.2). Logged as training goes: the reward-model score, the
hidden reward r* (which the policy never sees), and the KL to the reference. Papers:
https://arxiv.org/abs/1909.08593, https://arxiv.org/abs/2203.02155, https://arxiv.org/abs/1707.06347.

Inputs: the SFT reference (stage 1, rlhf_sft.py --save-model) and the reward model (stage 2,
rlhf_reward_model.py --save-model), which must share one task spec (vocabulary and hidden reward).
Evaluation, on fresh prompts: r* of the policy's samples against the reference's, the win rate judged by
r* (ties count half), and the KL from the reference (the mean log-ratio over the policy's samples).

    python algorithms/rlhf_ppo.py --reference-path runs/rlhf__rlhf_sft__1__.../reference.pt \\
        --reward-model-path runs/rlhf__rlhf_reward_model__1__.../reward_model.pt --save-model
    python algorithms/rlhf_ppo.py ... --kl-coef 0.01                  # a weak penalty: over-optimisation
    python algorithms/rlhf_ppo.py ... --adaptive-kl --kl-target 4.0

Resume: `--checkpoint-every N` writes the policy with its value head, its optimizer, the prompt and sample
generators' states, the KL coefficient and train_log.csv so far every N iterations (under
runs/{run_name}/checkpoints, or --checkpoint-dir); the same command with `--resume PATH` goes on in the
same run directory, bitwise on CPU.
"""

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

import numpy as np
import torch
import torch.nn as nn
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation draws apart from training
EVALUATION_FIGURES = ("true_reward_mean", "win_rate", "kl_to_reference")  # a reloaded policy gives the same
ADAPTIVE_KL_CLIP = 0.2  # Ziegler et al. 2019: the proportional error is clipped to [-0.2, 0.2]
ADAPTIVE_KL_HORIZON = 10_000  # completions over which beta may double or halve (their K_beta)
PROGRESS_SECONDS = 5.0


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of random, numpy and torch"""
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
    save_model: bool = False
    """save the policy to runs/{run_name}/policy.pt"""
    model_path: Optional[str] = None
    """load a saved policy before training; with --train-steps 0 this only evaluates it"""
    reference_path: str = "reference.pt"
    """the SFT reference checkpoint (rlhf_sft.py --save-model): the start and the anchor of the policy"""
    reward_model_path: str = "reward_model.pt"
    """the reward model (rlhf_reward_model.py --save-model) whose score the policy maximises"""
    train_steps: int = 100
    """PPO iterations (each: a batch of completions, then the update)"""
    rollout_size: int = 256
    """completions per iteration"""
    learning_rate: float = 3e-4
    """Adam step size"""
    kl_coef: float = 0.1
    """beta, the weight of the per-token KL penalty (its start when --adaptive-kl)"""
    adaptive_kl: bool = False
    """adjust beta so that the KL per completion approaches --kl-target"""
    kl_target: float = 4.0
    """the KL per completion (nats) that --adaptive-kl aims at"""
    gae_lambda: float = 0.95
    """the GAE lambda over a completion's tokens (gamma is 1)"""
    update_epochs: int = 4
    """epochs over each iteration's completions"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    clip_coef: float = 0.2
    """the surrogate clipping epsilon (and the value clip)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm"""
    eval_samples: int = 2_000
    """fresh prompts on which policy and reference are compared"""
    checkpoint_every: int = 0
    """write a checkpoint to resume from every this many iterations (0: never); the latest two are kept"""
    checkpoint_dir: Optional[str] = None
    """where checkpoints go; None: runs/{run_name}/checkpoints"""
    resume: Optional[str] = None
    """a checkpoint to continue, given with the run's own arguments: the run goes on in its run directory"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Task
def true_reward(spec: dict, prompt: list, completion: list) -> float:
    """The hidden reward r*(x, y) of the task spec (rlhf_sft.py's docstring), from the spec's numbers."""
    finished = "<eos>" in completion
    words = completion[:completion.index("<eos>")] if finished else completion
    tone = sum(spec["lexicon"].get(word, 0.0) for word in words)
    on_topic = spec["topic_bonus"] if any(word in prompt for word in words) else 0.0
    length = -spec["length_cost"] * abs(len(words) - spec["target_length"])
    return tone + on_topic + length - (0.0 if finished else spec["unfinished_cost"])


def encode(spec: dict, prompt: list, completion: list) -> list:
    """Token ids of "<bos> prompt <sep> completion"."""
    index = {word: i for i, word in enumerate(spec["vocab"])}
    return [index[word] for word in ["<bos>", *prompt, "<sep>", *completion]]


def load_checkpoint(path: str, flag: str, made_by: str, scripts: tuple, device: torch.device) -> dict:
    """A checkpoint of an earlier stage (weights, task spec and sizes); one line and exit 2 if the file is
    missing or not one."""
    if not os.path.isfile(path):
        fail(f"{flag} {path} is not a file")
    try:
        checkpoint = torch.load(path, map_location=device)
        checkpoint["spec"]["vocab"], checkpoint["sizes"]["hidden_size"], checkpoint["model"]["gru.weight_ih_l0"]
    except (RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        fail(f"{flag} {path} is not {made_by}: {str(error).splitlines()[0]}")
    made = checkpoint.get("script")  # which stage saved it (files saved before the stages named themselves: none)
    if made is not None and made not in scripts:
        fail(f"{flag} {path} was saved by {made}; it takes {made_by}")
    return checkpoint


# ---------------------------------------------------------------------------------------- Models
class PolicyWithValue(nn.Module):
    """rlhf_sft.py's GRU language model with a value head on its GRU: tokens (batch, length) -> next-token
    logits (batch, length, vocab) and the value before each next token (batch, length)."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)
        self.value_head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple:
        outputs, state = self.gru(self.embedding(tokens), state)
        return self.head(outputs), self.value_head(outputs).squeeze(-1), state


class RewardModel(nn.Module):
    """rlhf_reward_model.py's model: tokens (batch, length) -> one score, read after the last token."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.gru(self.embedding(tokens))
        return self.head(outputs[torch.arange(len(tokens)), last]).squeeze(-1)


# ---------------------------------------------------------------------------------------- Rollouts
@torch.no_grad()
def sample_completions(policy: PolicyWithValue, spec: dict, prompts: list, generator: torch.Generator) -> tuple:
    """Completions of every prompt at once, token by token from the policy: the sequences (batch, prompt +
    max_completion tokens) and the mask of the completion tokens that count (up to and with "<eos>")."""
    device = next(policy.parameters()).device
    tokens = torch.tensor([encode(spec, prompt, []) for prompt in prompts], device=device)
    logits, _, state = policy(tokens)
    eos, prompt_tokens = spec["vocab"].index("<eos>"), tokens.shape[1]
    sequences = torch.zeros((len(prompts), prompt_tokens + spec["max_completion"]), dtype=torch.long, device=device)
    sequences[:, :prompt_tokens] = tokens
    for t in range(spec["max_completion"]):
        next_token = torch.multinomial(logits[:, -1].softmax(-1).cpu(), 1, generator=generator).to(device)  # (batch, 1)
        sequences[:, prompt_tokens + t] = next_token[:, 0]
        logits, _, state = policy(next_token, state)
    completion = sequences[:, prompt_tokens:]
    ended_before = torch.cumsum(completion == eos, dim=1) - (completion == eos).long()  # "<eos>" strictly before t
    return sequences, (ended_before == 0).float()


def completion_logprobs(model: PolicyWithValue, sequences: torch.Tensor, prompt_tokens: int) -> tuple:
    """log pi(a_t|s_t) of every completion token and V(s_t), teacher-forced: (batch, max_completion) each."""
    logits, values, _ = model(sequences[:, :-1])
    log_distributions = logits[:, prompt_tokens - 1:].log_softmax(-1)  # the positions that predict completion tokens
    taken = log_distributions.gather(-1, sequences[:, prompt_tokens:].unsqueeze(-1)).squeeze(-1)
    return taken, values[:, prompt_tokens - 1:]


def kl_penalised_rewards(logprobs, reference_logprobs, scores, mask, kl_coef: float) -> torch.Tensor:
    """Per token: -beta (log pi - log pi_ref); the completion's last counted token also gets the reward
    model's score (Eq. 2 of Ziegler et al. 2019). All (batch, max_completion) but scores (batch,)."""
    rewards = -kl_coef * (logprobs - reference_logprobs) * mask
    last = mask.sum(1).long() - 1  # the index of each completion's last counted token
    rewards[torch.arange(len(rewards)), last] += scores
    return rewards


def compute_gae(rewards, values, mask, gae_lambda: float) -> torch.Tensor:
    """GAE (Schulman et al. 2016) over each completion's tokens with gamma 1: delta_t = r_t + V_t+1 - V_t,
    V after the last counted token being 0 (the completion is over), A_t = delta_t + lambda A_t+1.
    (batch, max_completion); tokens past the end get 0."""
    next_values = torch.cat([values[:, 1:] * mask[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + next_values[:, t] - values[:, t]
        next_advantage = (delta + gae_lambda * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
    return advantages


def words_of(spec: dict, sequences: torch.Tensor, mask: torch.Tensor, prompt_tokens: int) -> list:
    """(prompt words, completion words) of each sequence."""
    vocab = spec["vocab"]
    return [([vocab[token] for token in row[1:prompt_tokens - 1]],
             [vocab[token] for token, counted in zip(row[prompt_tokens:], kept) if counted])
            for row, kept in zip(sequences.tolist(), mask.tolist())]


# ---------------------------------------------------------------------------------------- Logging
# What a resumed run may change: where and how often it checkpoints, logging, the device, saving the model.
# A run that started from a saved model (--model-path) resumes without it: --resume refuses the two together,
# and the checkpoint holds the weights reached since.
ARGS_A_RESUME_MAY_CHANGE = {"resume", "checkpoint_every", "checkpoint_dir", "track", "tensorboard", "wandb_project_name",
                            "wandb_entity", "model_path", "save_model", "cuda"}
CHECKPOINTS_KEPT = 2  # a checkpoint is small: the latest two, in case the newest is damaged


def write_checkpoint(checkpoint: dict, directory: str, step: int) -> str:
    """Atomically: a temporary file, synced, then renamed over, so a kill mid-write leaves the previous
    checkpoint whole. Keeps the latest CHECKPOINTS_KEPT."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"checkpoint_{step:012d}.pt")  # zero-padded: names sort by step
    with open(path + ".tmp", "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(path + ".tmp", path)
    for old in sorted(glob.glob(os.path.join(directory, "checkpoint_*.pt")))[:-CHECKPOINTS_KEPT]:
        os.remove(old)
    return path


def load_resume(args: Args) -> dict:
    """The checkpoint to resume, refused in one line when it is unreadable, another script's, or made
    with other arguments (beyond ARGS_A_RESUME_MAY_CHANGE)."""
    try:
        # our own file holds numpy and python random states besides tensors: not weights only
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=False)
        saved_args, script = checkpoint["args"], checkpoint["script"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        fail(f"--resume {args.resume} is not a readable checkpoint (corrupt or truncated?): {str(error).splitlines()[0]}")
    if script != "rlhf_ppo.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of rlhf_ppo.py")
    changed = [f"--{name.replace('_', '-')} {saved_args.get(name)} (now {value})" for name, value in vars(args).items()
               if name not in ARGS_A_RESUME_MAY_CHANGE and saved_args.get(name) != value]
    if changed:
        fail(f"--resume needs the run's own arguments; the checkpoint was made with {', '.join(changed)}")
    return checkpoint


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

            # a resumed run drops what was logged after its checkpoint
            self.writer = SummaryWriter(run_dir, purge_step=resumed and resumed["step"])

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
    if args.max_grad_norm <= 0:  # a negative clip flips the gradient (ascent); 0 zeroes it
        fail(f"--max-grad-norm must be > 0; got {args.max_grad_norm}")
    for name in ("rollout_size", "update_epochs", "num_minibatches", "eval_samples"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.train_steps < 0:
        fail(f"--train-steps must be >= 0 (0 only evaluates); got {args.train_steps}")
    if args.train_steps == 0 and args.model_path is None:
        fail("--train-steps 0 only evaluates a saved policy: give it with --model-path")
    if args.num_minibatches > args.rollout_size:
        fail(f"--num-minibatches ({args.num_minibatches}) must not exceed --rollout-size ({args.rollout_size})")
    if args.kl_coef < 0 or args.kl_target <= 0 or not 0 < args.learning_rate < np.inf or not 0.0 <= args.gae_lambda <= 1.0:
        fail(f"--kl-coef must be >= 0, --kl-target > 0, --learning-rate > 0 and finite, --gae-lambda in [0, 1]; got "
             f"{args.kl_coef}, {args.kl_target}, {args.learning_rate}, {args.gae_lambda}")
    if args.adaptive_kl and args.kl_coef == 0:  # the controller multiplies beta: from 0 it never moves
        fail("--adaptive-kl adjusts --kl-coef by a factor each iteration and cannot move it from 0: give a starting --kl-coef > 0")
    # a negative coefficient turns its term around (value ascent, a clip window that shuts)
    if not (args.clip_coef > 0 and args.vf_coef >= 0):
        fail(f"--clip-coef must be > 0, --vf-coef >= 0; got {args.clip_coef}, {args.vf_coef}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 (0: no checkpoints); got {args.checkpoint_every}")
    if args.resume is not None and (not os.path.isfile(args.resume) or args.model_path is not None):
        fail(f"--resume {args.resume} must be a checkpoint file, and not combined with --model-path")


def train(args: Args) -> dict:
    check_args(args)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    resumed = load_resume(args) if args.resume is not None else None
    saved = load_checkpoint(args.model_path, "--model-path", "a policy (rlhf_ppo.py --save-model)", ("rlhf_ppo.py",),
                            device) if args.model_path is not None else None
    reference_checkpoint = load_checkpoint(args.reference_path, "--reference-path",
                                           "an rlhf_sft.py reference (made with --save-model)", ("rlhf_sft.py",), device)
    reward_checkpoint = load_checkpoint(args.reward_model_path, "--reward-model-path",
                                        "an rlhf_reward_model.py model (made with --save-model)",
                                        ("rlhf_reward_model.py",), device)
    spec, sizes = reference_checkpoint["spec"], reference_checkpoint["sizes"]
    for flag, checkpoint in (("--reward-model-path", reward_checkpoint), ("--model-path", saved)):
        if checkpoint is not None and checkpoint["spec"] != spec:
            fail(f"{flag} was made for another task spec (vocabulary or reward) than --reference-path {args.reference_path}")

    vocab_size = len(spec["vocab"])
    reference = PolicyWithValue(vocab_size, sizes["embedding_size"], sizes["hidden_size"]).to(device)
    reference.load_state_dict(reference_checkpoint["model"], strict=False)  # the reference has no value head
    reference.requires_grad_(False)
    policy = PolicyWithValue(vocab_size, sizes["embedding_size"], sizes["hidden_size"]).to(device)
    policy.load_state_dict(saved["model"] if saved else reference_checkpoint["model"], strict=saved is not None)
    reward_model = RewardModel(vocab_size, reward_checkpoint["sizes"]["embedding_size"],
                               reward_checkpoint["sizes"]["hidden_size"]).to(device)
    reward_model.load_state_dict(reward_checkpoint["model"])
    reward_model.requires_grad_(False)
    score_mean, score_std = reward_checkpoint["score_mean"], reward_checkpoint["score_std"]
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, eps=1e-5)
    rng = np.random.default_rng(args.seed)  # prompts
    generator = torch.Generator().manual_seed(args.seed)  # samples
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide GRU gains nothing from a second thread

    run_name = f"rlhf__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = resumed["run_dir"] if resumed else os.path.join("runs", run_name)  # a resumed run goes on in its own
    run_name = os.path.basename(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint_dir = args.checkpoint_dir or os.path.join(run_dir, "checkpoints")
    figure_log = FigureLog(args, run_name, run_dir, resumed=resumed)
    log_path = os.path.join(run_dir, "train_log.csv")
    log_file = open(log_path, "w", newline="")
    train_log = csv.writer(log_file)
    kl_coef, first_iteration = args.kl_coef, 1
    if resumed is None:
        train_log.writerow(["iteration", "reward_model_score", "true_reward", "kl_to_reference", "kl_coef", "wall_time"])
    else:  # go on where the checkpoint was written: its log rows (none written after it), weights, random streams
        log_file.write(resumed["train_log_csv"])
        policy.load_state_dict(resumed["policy"])
        optimizer.load_state_dict(resumed["optimizer"])
        rng.bit_generator.state = resumed["prompt_rng"]
        generator.set_state(resumed["sample_generator"])
        torch.set_rng_state(resumed["torch"])  # the minibatch shuffles
        kl_coef, first_iteration = resumed["kl_coef"], resumed["step"] + 1

    def new_prompts(count: int, prompt_rng: np.random.Generator) -> list:
        return [list(prompt_rng.choice(spec["topics"], size=spec["prompt_length"], replace=False)) for _ in range(count)]

    prompt_tokens = 1 + spec["prompt_length"] + 1  # <bos> prompt <sep>
    minibatch_size = args.rollout_size // args.num_minibatches
    start_time, last_print = time.time(), time.time()
    try:
        for iteration in range(first_iteration, args.train_steps + 1):
            # ---- rollout: completions of fresh prompts, and everything the update needs about them
            sequences, mask = sample_completions(policy, spec, new_prompts(args.rollout_size, rng), generator)
            with torch.no_grad():
                logprobs, values = completion_logprobs(policy, sequences, prompt_tokens)  # (rollout, max_completion)
                reference_logprobs, _ = completion_logprobs(reference, sequences, prompt_tokens)
                last = prompt_tokens + mask.sum(1).long() - 1  # the sequence index of each completion's last token
                scores = (reward_model(sequences, last) - score_mean) / (score_std + 1e-8)
                rewards = kl_penalised_rewards(logprobs, reference_logprobs, scores, mask, kl_coef)
                advantages = compute_gae(rewards, values, mask, args.gae_lambda)
                returns = advantages + values
            kl_per_completion = ((logprobs - reference_logprobs) * mask).sum(1).mean().item()
            true_rewards = [true_reward(spec, prompt, completion) for prompt, completion in
                            words_of(spec, sequences, mask, prompt_tokens)]

            # ---- PPO update over whole completions, the loss averaged over their counted tokens
            for epoch in range(args.update_epochs):
                order = torch.randperm(args.rollout_size, device=device)
                for start in range(0, args.rollout_size - minibatch_size + 1, minibatch_size):
                    mb_inds = order[start:start + minibatch_size]
                    mb_mask = mask[mb_inds]
                    newlogprobs, newvalues = completion_logprobs(policy, sequences[mb_inds], prompt_tokens)
                    ratio = (newlogprobs - logprobs[mb_inds]).exp()
                    mb_advantages = advantages[mb_inds]
                    counted = mb_mask.bool()
                    mb_advantages = (mb_advantages - mb_advantages[counted].mean()) / (mb_advantages[counted].std() + 1e-8)
                    # Clipped surrogate, Eq. 7 of Schulman et al. 2017, per token
                    pg_losses = torch.max(-mb_advantages * ratio,
                                          -mb_advantages * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef))
                    v_clipped = values[mb_inds] + (newvalues - values[mb_inds]).clamp(-args.clip_coef, args.clip_coef)
                    v_losses = 0.5 * torch.max((newvalues - returns[mb_inds]) ** 2, (v_clipped - returns[mb_inds]) ** 2)
                    loss = ((pg_losses + args.vf_coef * v_losses) * mb_mask).sum() / mb_mask.sum()
                    if not torch.isfinite(loss):
                        fail(f"the PPO loss became {loss.item()} at iteration {iteration}")
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                    optimizer.step()

            if args.adaptive_kl:  # Ziegler et al. 2019, Section 2.2: proportional control of the KL
                error = float(np.clip(kl_per_completion / args.kl_target - 1.0, -ADAPTIVE_KL_CLIP, ADAPTIVE_KL_CLIP))
                kl_coef *= 1.0 + error * args.rollout_size / ADAPTIVE_KL_HORIZON
            figures = {"charts/reward_model_score": scores.mean().item(), "charts/true_reward": float(np.mean(true_rewards)),
                       "charts/kl_to_reference": kl_per_completion, "charts/kl_coef": kl_coef,
                       "losses/loss": loss.item()}
            train_log.writerow([iteration, *(f"{figures[name]:.6f}" for name in (
                "charts/reward_model_score", "charts/true_reward", "charts/kl_to_reference", "charts/kl_coef")),
                f"{time.time() - start_time:.3f}"])
            figure_log.log(figures, step=iteration)
            if args.checkpoint_every and iteration % args.checkpoint_every == 0 and iteration < args.train_steps:
                log_file.flush()
                with open(log_path) as rows:
                    train_log_csv = rows.read()
                write_checkpoint({"script": "rlhf_ppo.py", "args": vars(args), "run_dir": run_dir, "step": iteration,
                                  "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                                  "prompt_rng": rng.bit_generator.state,
                                  "sample_generator": generator.get_state(), "torch": torch.get_rng_state(),
                                  "kl_coef": kl_coef, "train_log_csv": train_log_csv,
                                  "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb else None},
                                 checkpoint_dir, iteration)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                print(f"iteration {iteration:,}/{args.train_steps:,} | reward model {figures['charts/reward_model_score']:.2f} | "
                      f"hidden reward {figures['charts/true_reward']:.2f} | KL {kl_per_completion:.2f} | beta {kl_coef:.3f}")
    except KeyboardInterrupt:
        print("interrupted: evaluating and saving what was learned")
    log_file.close()
    train_time = time.time() - start_time

    # ---- evaluation on fresh prompts: hidden reward, win rate against the reference, KL from it
    eval_rng = np.random.default_rng(args.seed + EVAL_SEED_OFFSET)
    eval_generator = torch.Generator().manual_seed(args.seed + EVAL_SEED_OFFSET)
    prompts = new_prompts(args.eval_samples, eval_rng)
    policy_sequences, policy_mask = sample_completions(policy, spec, prompts, eval_generator)
    reference_sequences, reference_mask = sample_completions(reference, spec, prompts, eval_generator)
    with torch.no_grad():
        kl = ((completion_logprobs(policy, policy_sequences, prompt_tokens)[0]
               - completion_logprobs(reference, policy_sequences, prompt_tokens)[0]) * policy_mask).sum(1).mean().item()
    policy_rewards = np.array([true_reward(spec, *pair) for pair in words_of(spec, policy_sequences, policy_mask, prompt_tokens)])
    reference_rewards = np.array([true_reward(spec, *pair) for pair in
                                  words_of(spec, reference_sequences, reference_mask, prompt_tokens)])
    win_rate = float(np.mean((policy_rewards > reference_rewards) + 0.5 * (policy_rewards == reference_rewards)))
    summary = {"args": vars(args), "global_step": args.train_steps, "true_reward_mean": float(policy_rewards.mean()),
               "reference_true_reward_mean": float(reference_rewards.mean()), "win_rate": win_rate,
               "kl_to_reference": kl, "final_kl_coef": kl_coef, "wall_time": time.time() - start_time,
               "train_time": train_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}}
    if args.save_model:
        torch.save({"script": "rlhf_ppo.py", "model": policy.state_dict(), "spec": spec, "sizes": sizes, "args": vars(args)},
                   os.path.join(run_dir, "policy.pt"))
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/true_reward_mean": summary["true_reward_mean"], "eval/win_rate": win_rate,
                    "eval/kl_to_reference": kl}, step=args.train_steps)
    figure_log.close()
    print(f"{run_name}: hidden reward {summary['true_reward_mean']:.2f} (reference {summary['reference_true_reward_mean']:.2f}) | "
          f"win rate {win_rate:.3f} | KL to the reference {kl:.2f} nats")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "true_reward_mean": summary["true_reward_mean"], "win_rate": win_rate,
            "kl_to_reference": kl, "wall_time": summary["wall_time"]}


if __name__ == "__main__":
    train(tyro.cli(Args))
