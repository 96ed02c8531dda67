"""RLHF, stage 4: Direct Preference Optimization (DPO), fine-tuning the policy on the preference pairs
themselves, with no reward model and no sampling during training.

The KL-regularised objective that PPO-KL optimises, max E[r(x, y)] - beta KL(pi || pi_ref), has the
closed-form optimum pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x) (Eq. 4 of Rafailov et al. 2023).
Solved for r and put into the Bradley-Terry model, Z cancels, which leaves a classification loss on the
pairs (Eq. 7):
    loss = -log sigmoid(beta [log pi(y_c|x) / pi_ref(y_c|x) - log pi(y_r|x) / pi_ref(y_r|x)]),
where log pi(y|x) sums the completion's token log-probabilities. The policy starts as a copy of the SFT
reference (stage 1, rlhf_sft.py), which stays frozen. Paper: https://arxiv.org/abs/2305.18290.

Evaluation, on fresh prompts: the hidden reward r* of the policy's samples against the reference's,
the win rate of policy over reference judged by r* (ties count half), the KL divergence from the
reference (a Monte Carlo estimate: the mean of log pi(y|x) - log pi_ref(y|x) over the policy's own
samples), and the held-out accuracy of DPO's implicit reward beta log pi/pi_ref on the pairs.

    python algorithms/rlhf_dpo.py --reference-path runs/rlhf__rlhf_sft__1__.../reference.pt \\
        --preferences runs/rlhf__rlhf_sft__1__.../preferences.jsonl --save-model
    python algorithms/rlhf_dpo.py ... --beta 0.5                       # a stronger pull toward the reference
    python algorithms/rlhf_dpo.py ... --model-path runs/.../policy.pt --train-steps 0      # evaluate

Resume: `--checkpoint-every N` writes the policy, its optimizer, the batch generator's state, the step and
train_log.csv so far every N gradient steps (under runs/{run_name}/checkpoints, or --checkpoint-dir); the
same command with `--resume PATH` goes on in the same run directory, bitwise on CPU.
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
import torch.nn.functional as F
import tyro

EVAL_SEED_OFFSET = 100_000  # evaluation draws apart from training
EVALUATION_FIGURES = ("true_reward_mean", "win_rate", "kl_to_reference", "heldout_accuracy")  # a reloaded policy gives the same
LOG_EVERY_STEPS = 50  # a row of train_log.csv (and a figure) every this many gradient steps
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
    preferences: str = "preferences.jsonl"
    """the preference pairs: JSONL lines {"prompt", "chosen", "rejected"} of space-separated words"""
    beta: float = 0.1
    """the KL weight beta of the objective: smaller lets the policy move further from the reference"""
    train_steps: int = 600
    """gradient steps"""
    batch_size: int = 64
    """pairs per gradient step"""
    learning_rate: float = 1e-3
    """Adam step size"""
    heldout_fraction: float = 0.1
    """share of the pairs held out to measure the implicit reward's accuracy"""
    eval_samples: int = 2_000
    """fresh prompts on which policy and reference are compared"""
    checkpoint_every: int = 0
    """write a checkpoint to resume from every this many gradient steps (0: never); the latest two are kept"""
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


def read_pairs(path: str, spec: dict) -> list:
    """(prompt, chosen, rejected) word lists; one line and exit 2 for a malformed file or unknown words."""
    if not os.path.isfile(path):
        fail(f"--preferences {path} is not a file")
    try:
        with open(path) as file:
            rows = [json.loads(line) for line in file if line.strip()]
        pairs = [(row["prompt"].split(), row["chosen"].split(), row["rejected"].split()) for row in rows]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        fail(f"--preferences {path} is not a JSONL file of {{\"prompt\", \"chosen\", \"rejected\"}} lines: {error}")
    unknown = sorted({word for pair in pairs for part in pair for word in part} - set(spec["vocab"]))
    if unknown:
        fail(f"--preferences {path} has words outside the reference's vocabulary (another task?): {unknown[:5]}")
    if len(pairs) < 2:
        fail(f"--preferences {path} needs at least 2 pairs (one to train on, one held out); it has {len(pairs)}")
    return pairs


# ---------------------------------------------------------------------------------------- Policy
class GRULanguageModel(nn.Module):
    """tokens (batch, length) -> next-token logits (batch, length, vocab); rlhf_sft.py's model."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple:
        outputs, state = self.gru(self.embedding(tokens), state)
        return self.head(outputs), state


def sequence_logprobs(model: GRULanguageModel, spec: dict, prompts: list, completions: list,
                      device: torch.device) -> torch.Tensor:
    """log pi(y|x) of each completion: the sum of its tokens' log-probabilities given what precedes them,
    (batch,). The prompt is context: its tokens are not counted."""
    sequences = [encode(spec, prompt, completion) for prompt, completion in zip(prompts, completions)]
    batch = torch.zeros((len(sequences), max(len(sequence) for sequence in sequences)), dtype=torch.long)
    mask = torch.zeros(batch.shape)
    for i, (prompt, sequence) in enumerate(zip(prompts, sequences)):
        batch[i, :len(sequence)] = torch.tensor(sequence)
        mask[i, len(prompt) + 2:len(sequence)] = 1.0  # the completion's tokens (after <bos>, prompt, <sep>)
    batch, mask = batch.to(device), mask.to(device)
    logits, _ = model(batch[:, :-1])
    token_logprobs = logits.log_softmax(-1).gather(-1, batch[:, 1:].unsqueeze(-1)).squeeze(-1)  # (batch, length - 1)
    return (token_logprobs * mask[:, 1:]).sum(-1)


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float) -> torch.Tensor:
    """Eq. 7 of Rafailov et al. 2023 from the sequence log-probabilities (batch,) of both models, averaged."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


@torch.no_grad()
def sample(model: GRULanguageModel, spec: dict, prompts: list, generator: torch.Generator) -> list:
    """Completions (lists of words, "<eos>" included when reached) of every prompt at once, each token drawn
    from the model's softmax until "<eos>" or the spec's max_completion tokens."""
    device = next(model.parameters()).device
    logits, state = model(torch.tensor([encode(spec, prompt, []) for prompt in prompts], device=device))
    eos = spec["vocab"].index("<eos>")
    completions = torch.zeros((len(prompts), spec["max_completion"]), dtype=torch.long)
    for t in range(spec["max_completion"]):
        next_token = torch.multinomial(logits[:, -1].softmax(-1).cpu(), 1, generator=generator)  # (batch, 1)
        completions[:, t] = next_token[:, 0]
        logits, state = model(next_token.to(device), state)
    words = []
    for row in completions.tolist():
        row = row[:row.index(eos) + 1] if eos in row else row
        words.append([spec["vocab"][token] for token in row])
    return words


def implicit_reward_accuracy(policy_chosen, policy_rejected, reference_chosen, reference_rejected) -> float:
    """How often the implicit reward beta log pi/pi_ref ranks a pair as its label does."""
    return ((policy_chosen - reference_chosen) > (policy_rejected - reference_rejected)).float().mean().item()


def load_checkpoint(path: str, flag: str, made_by: str, scripts: tuple, device: torch.device) -> dict:
    """A language-model checkpoint (rlhf_sft.py's reference.pt or this script's policy.pt): weights, task spec
    and sizes; one line and exit 2 if the file is missing or not one."""
    if not os.path.isfile(path):
        fail(f"{flag} {path} is not a file")
    try:
        checkpoint = torch.load(path, map_location=device)
        checkpoint["spec"]["vocab"], checkpoint["sizes"]["hidden_size"], checkpoint["model"]["head.weight"]
    except (RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        fail(f"{flag} {path} is not {made_by}: {str(error).splitlines()[0]}")
    made = checkpoint.get("script")  # which stage saved it (files saved before the stages named themselves: none)
    if made is not None and made not in scripts:
        fail(f"{flag} {path} was saved by {made}; it takes {made_by}")
    return checkpoint


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
    if script != "rlhf_dpo.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of rlhf_dpo.py")
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
    if args.train_steps < 0 or args.batch_size < 1 or args.eval_samples < 1:
        fail(f"--train-steps must be >= 0, --batch-size and --eval-samples >= 1; got {args.train_steps}, "
             f"{args.batch_size}, {args.eval_samples}")
    if args.train_steps == 0 and args.model_path is None:
        fail("--train-steps 0 only evaluates a saved policy: give it with --model-path")
    if args.beta <= 0 or not 0 < args.learning_rate < np.inf or not 0.0 < args.heldout_fraction < 1.0:
        fail(f"--beta must be > 0, --learning-rate > 0 and finite, --heldout-fraction in (0, 1); got {args.beta}, "
             f"{args.learning_rate}, {args.heldout_fraction}")
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
    saved = load_checkpoint(args.model_path, "--model-path", "a policy (rlhf_dpo.py --save-model) or a reference",
                            ("rlhf_dpo.py", "rlhf_sft.py"), device) if args.model_path is not None else None
    reference_checkpoint = load_checkpoint(args.reference_path, "--reference-path",
                                           "an rlhf_sft.py reference (made with --save-model)", ("rlhf_sft.py",), device)
    spec, sizes = reference_checkpoint["spec"], reference_checkpoint["sizes"]
    if saved is not None and saved["spec"] != spec:
        fail(f"--model-path {args.model_path} was trained on another task spec than --reference-path {args.reference_path}")
    pairs = read_pairs(args.preferences, spec)
    rng = np.random.default_rng(args.seed)  # the split and the batches
    order = rng.permutation(len(pairs))
    held_out = max(1, int(len(pairs) * args.heldout_fraction))
    test_pairs, train_pairs = [pairs[i] for i in order[:held_out]], [pairs[i] for i in order[held_out:]]

    reference = GRULanguageModel(len(spec["vocab"]), sizes["embedding_size"], sizes["hidden_size"]).to(device)
    reference.load_state_dict(reference_checkpoint["model"])
    reference.requires_grad_(False)  # frozen: the anchor of the KL term
    policy = GRULanguageModel(len(spec["vocab"]), sizes["embedding_size"], sizes["hidden_size"]).to(device)
    policy.load_state_dict((saved or reference_checkpoint)["model"])  # DPO starts from the reference
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate)
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
    first_step = 1
    if resumed is None:
        train_log.writerow(["step", "dpo_loss", "implicit_reward_accuracy", "wall_time"])
    else:  # go on where the checkpoint was written: its log rows (none written after it), weights, batches
        log_file.write(resumed["train_log_csv"])
        policy.load_state_dict(resumed["policy"])
        optimizer.load_state_dict(resumed["optimizer"])
        rng.bit_generator.state = resumed["batch_rng"]
        first_step = resumed["step"] + 1

    def logprobs(model: GRULanguageModel, batch: list) -> tuple:
        """log pi(y_c|x) and log pi(y_r|x) of a batch of pairs, (batch,) each."""
        prompts = [prompt for prompt, _, _ in batch]
        return (sequence_logprobs(model, spec, prompts, [chosen for _, chosen, _ in batch], device),
                sequence_logprobs(model, spec, prompts, [rejected for _, _, rejected in batch], device))

    # ---- training: Eq. 7 on batches of training pairs
    start_time, last_print = time.time(), time.time()
    try:
        for step in range(first_step, args.train_steps + 1):
            batch = [train_pairs[i] for i in rng.integers(len(train_pairs), size=args.batch_size)]
            with torch.no_grad():
                reference_chosen, reference_rejected = logprobs(reference, batch)
            policy_chosen, policy_rejected = logprobs(policy, batch)
            loss = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, args.beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % LOG_EVERY_STEPS == 0 or step == args.train_steps:
                if not torch.isfinite(loss):
                    fail(f"the DPO loss became {loss.item()} at step {step}")
                accuracy = implicit_reward_accuracy(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
                train_log.writerow([step, f"{loss.item():.6f}", f"{accuracy:.4f}", f"{time.time() - start_time:.3f}"])
                figure_log.log({"losses/dpo_loss": loss.item(), "charts/implicit_reward_accuracy": accuracy,
                                "charts/steps_per_second": (step - first_step + 1) / max(time.time() - start_time, 1e-9)},
                               step=step)
            if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.train_steps:
                log_file.flush()
                with open(log_path) as rows:
                    train_log_csv = rows.read()
                write_checkpoint({"script": "rlhf_dpo.py", "args": vars(args), "run_dir": run_dir, "step": step,
                                  "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                                  "batch_rng": rng.bit_generator.state, "train_log_csv": train_log_csv,
                                  "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb else None},
                                 checkpoint_dir, step)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                print(f"step {step:,}/{args.train_steps:,} | loss {loss.item():.3f} | "
                      f"{(step - first_step + 1) / (time.time() - start_time):,.0f} steps/s")
    except KeyboardInterrupt:
        print("interrupted: evaluating and saving what was learned")
    log_file.close()
    train_time = time.time() - start_time

    # ---- evaluation on fresh prompts: hidden reward, win rate against the reference, KL from it
    rng = np.random.default_rng(args.seed + EVAL_SEED_OFFSET)
    generator = torch.Generator().manual_seed(args.seed + EVAL_SEED_OFFSET)
    prompts = [list(rng.choice(spec["topics"], size=spec["prompt_length"], replace=False)) for _ in range(args.eval_samples)]
    with torch.no_grad():
        policy_samples, reference_samples = sample(policy, spec, prompts, generator), sample(reference, spec, prompts, generator)
        kl = (sequence_logprobs(policy, spec, prompts, policy_samples, device)
              - sequence_logprobs(reference, spec, prompts, policy_samples, device)).mean().item()
        policy_chosen, policy_rejected = logprobs(policy, test_pairs)
        reference_chosen, reference_rejected = logprobs(reference, test_pairs)
        heldout_accuracy = implicit_reward_accuracy(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    policy_rewards = np.array([true_reward(spec, prompt, y) for prompt, y in zip(prompts, policy_samples)])
    reference_rewards = np.array([true_reward(spec, prompt, y) for prompt, y in zip(prompts, reference_samples)])
    win_rate = float(np.mean((policy_rewards > reference_rewards) + 0.5 * (policy_rewards == reference_rewards)))
    summary = {"args": vars(args), "global_step": args.train_steps, "true_reward_mean": float(policy_rewards.mean()),
               "reference_true_reward_mean": float(reference_rewards.mean()), "win_rate": win_rate,
               "kl_to_reference": kl, "heldout_accuracy": heldout_accuracy,
               "wall_time": time.time() - start_time, "train_time": train_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}}
    if args.save_model:
        torch.save({"script": "rlhf_dpo.py", "model": policy.state_dict(), "spec": spec, "sizes": sizes, "args": vars(args)},
                   os.path.join(run_dir, "policy.pt"))
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/true_reward_mean": summary["true_reward_mean"], "eval/win_rate": win_rate,
                    "eval/kl_to_reference": kl, "eval/heldout_accuracy": heldout_accuracy}, step=args.train_steps)
    figure_log.close()
    print(f"{run_name}: hidden reward {summary['true_reward_mean']:.2f} (reference {summary['reference_true_reward_mean']:.2f}) | "
          f"win rate {win_rate:.3f} | KL to the reference {kl:.2f} nats | implicit-reward accuracy {heldout_accuracy:.3f}")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "true_reward_mean": summary["true_reward_mean"], "win_rate": win_rate,
            "kl_to_reference": kl, "wall_time": summary["wall_time"]}


if __name__ == "__main__":
    train(tyro.cli(Args))
