"""RLHF, stage 1: a small synthetic language, supervised fine-tuning (SFT) of a reference policy on
demonstrations, and a preference dataset labelled by a hidden "human" reward.

InstructGPT's pipeline (Ouyang et al. 2022, Figure 2) starts from a language model fine-tuned on
demonstrations; people then compare pairs of its samples, and those comparisons train a reward model
(stage 2, rlhf_reward_model.py), which PPO maximises under a KL penalty to this reference (stage 3,
rlhf_ppo.py); DPO (Rafailov et al. 2023; stage 4, rlhf_dpo.py) learns from the comparisons directly.
Everything here is built from scratch, small enough to train in a minute on a CPU, and every stage
can check itself against the hidden reward that labelled the data. Papers:
https://arxiv.org/abs/2203.02155, https://arxiv.org/abs/1909.08593, https://arxiv.org/abs/2305.18290.

The language (the task spec, saved with every artifact so later stages read it, never import it):
a prompt is PROMPT_LENGTH topic words ("rain work"); a completion is up to MAX_COMPLETION words ending
with "<eos>": topic words, positive words ("great", "love", ...), negative words ("awful", "hate",
...) and fillers ("the", "very", ...). Demonstrations (the SFT data) are drawn by a documented grammar:
with probability 0.7 one of the prompt's topics, then words drawn uniformly from the positive,
negative and filler words, length uniform in [2, MAX_COMPLETION - 1], then "<eos>". The hidden reward,
which a person can read:
    r*(x, y) = (number of positive words - number of negative words in y)
             + TOPIC_BONUS if y mentions a topic of the prompt x
             - LENGTH_COST * |words in y - TARGET_LENGTH|
             - UNFINISHED_COST if y has no "<eos>" within MAX_COMPLETION tokens.
A second task, `--task bandit`, is the one where RLHF's answer is known in closed form: one prompt
("pick"), completions of a single token (one of BANDIT_ARMS, no "<eos>"), r*(y) the arm's number in
BANDIT_ARMS, and demonstrations drawn with BANDIT_DEMO_PROBABILITIES (which favour the worse arms, so the
reference has somewhere to move). The KL-regularised objective max E[r] - beta KL(pi || pi_ref) is then
maximised by pi*(y) proportional to pi_ref(y) exp(r(y) / beta) (Eq. 4 of Rafailov et al. 2023), which
benchmarks/rlhf/bandit.py checks PPO and DPO against. The same spec keys describe both tasks.
Preferences are labelled the way people label, noisily: for two samples y1, y2 of the reference policy,
P(y1 preferred) = sigmoid((r*(x, y1) - r*(x, y2)) / label_temperature) (Bradley & Terry 1952).

The policy: a GRU language model over the words (embedding, one GRU layer, a linear head to the
vocabulary), trained by cross-entropy on the completion tokens only (the prompt is context, as in SFT).
Writes {run_dir}/preferences.jsonl (one {"prompt", "chosen", "rejected"} line per pair: the shape of
public preference datasets) and, with --save-model, {run_dir}/reference.pt (the model and the task spec),
which the next stages start from; train_log.csv holds the loss every LOG_EVERY_STEPS steps.

    python algorithms/rlhf_sft.py --save-model                        # 3,000 steps, 12,000 preference pairs
    python algorithms/rlhf_sft.py --save-model --num-pairs 500 --label-temperature 0.5
    python algorithms/rlhf_sft.py --model-path runs/.../reference.pt --train-steps 0   # evaluate, relabel
    python algorithms/rlhf_sft.py --task bandit --save-model --train-steps 500      # the exact-optimum check's reference

Resume: `--checkpoint-every N` writes the model, its optimizer, the batch generator's state, the step and
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
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

# ---- the task spec: the language and the hidden reward (saved with every artifact)
TOPICS = ["rain", "sun", "work", "music", "food", "game", "cat", "city"]
POSITIVE = ["great", "love", "happy", "fun", "nice", "good"]
NEGATIVE = ["awful", "hate", "sad", "boring", "bad", "ugly"]
FILLERS = ["the", "a", "is", "very", "and", "so", "it", "today"]
SPECIAL = ["<pad>", "<bos>", "<sep>", "<eos>"]  # pad 0: padding is never predicted
PROMPT_LENGTH = 2  # topic words per prompt
MAX_COMPLETION = 8  # tokens a completion may take, its "<eos>" included
TARGET_LENGTH = 5  # the completion length (in words) people like best
TOPIC_BONUS = 1.0
LENGTH_COST = 0.5
UNFINISHED_COST = 2.0
BANDIT_ARMS = {"awful": -1.0, "bad": -0.5, "fine": 0.0, "good": 0.5, "great": 1.0, "superb": 1.5}  # r*(y)
BANDIT_DEMO_PROBABILITIES = [0.25, 0.2, 0.2, 0.15, 0.1, 0.1]  # the demonstrators' choice of each arm
DEMO_TOPIC_PROBABILITY = 0.7  # the demonstration grammar's chance of starting with a prompt topic
EVAL_SAMPLES = 2_000  # samples for the reference policy's mean hidden reward
EVAL_SEED_OFFSET = 100_000  # evaluation and labelling draw from generators seeded apart from training
EVALUATION_FIGURES = ("heldout_completion_loss", "reference_true_reward_mean")  # a reloaded model gives the same
PROGRESS_SECONDS = 5.0
LOG_EVERY_STEPS = 50  # a row of train_log.csv (and a figure) every this many gradient steps


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of random, numpy and torch"""
    task: Literal["language", "bandit"] = "language"
    """the synthetic language, or the one-prompt, one-token bandit whose optimum is known (see the docstring)"""
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
    """save the reference policy to runs/{run_name}/reference.pt (the next stages start from it)"""
    model_path: Optional[str] = None
    """load a saved reference before training; with --train-steps 0 this only evaluates it and labels pairs"""
    train_steps: int = 3_000
    """gradient steps of supervised fine-tuning"""
    num_demonstrations: int = 20_000
    """demonstrations drawn from the grammar (10% held out to measure the fit)"""
    batch_size: int = 64
    """sequences per gradient step"""
    learning_rate: float = 3e-3
    """Adam step size"""
    embedding_size: int = 32
    """width of the word embeddings"""
    hidden_size: int = 64
    """width of the GRU"""
    num_pairs: int = 12_000
    """preference pairs to sample from the reference and label with the hidden reward (0: none)"""
    label_temperature: float = 1.0
    """noise of the labels: P(y1 preferred) = sigmoid((r*(y1) - r*(y2)) / label_temperature)"""
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
def task_spec(task: str) -> dict:
    """The task and its hidden reward as data: later stages read it from the artifacts."""
    if task == "bandit":  # one prompt, one token: r*(y) is the arm's number; no topic, length or "<eos>" terms
        return {"task": "bandit", "vocab": SPECIAL + ["pick"] + list(BANDIT_ARMS), "topics": ["pick"],
                "lexicon": dict(BANDIT_ARMS), "prompt_length": 1, "max_completion": 1, "target_length": 1,
                "topic_bonus": 0.0, "length_cost": 0.0, "unfinished_cost": 0.0}
    return {"task": "language", "vocab": SPECIAL + TOPICS + POSITIVE + NEGATIVE + FILLERS, "topics": TOPICS,
            "lexicon": {**{word: 1.0 for word in POSITIVE}, **{word: -1.0 for word in NEGATIVE}},
            "prompt_length": PROMPT_LENGTH, "max_completion": MAX_COMPLETION, "target_length": TARGET_LENGTH,
            "topic_bonus": TOPIC_BONUS, "length_cost": LENGTH_COST, "unfinished_cost": UNFINISHED_COST}


def true_reward(spec: dict, prompt: list, completion: list) -> float:
    """r*(x, y) of the docstring; prompt and completion are lists of words (the completion with its "<eos>",
    if it has one)."""
    finished = "<eos>" in completion
    words = completion[:completion.index("<eos>")] if finished else completion
    tone = sum(spec["lexicon"].get(word, 0.0) for word in words)
    on_topic = spec["topic_bonus"] if any(word in prompt for word in words) else 0.0
    length = -spec["length_cost"] * abs(len(words) - spec["target_length"])
    return tone + on_topic + length - (0.0 if finished else spec["unfinished_cost"])


def sample_prompt(spec: dict, rng: np.random.Generator) -> list:
    return list(rng.choice(spec["topics"], size=spec["prompt_length"], replace=False))


def demonstration(spec: dict, prompt: list, rng: np.random.Generator) -> list:
    """One completion of the demonstration grammar (see the docstring), "<eos>" included; for the bandit,
    one arm drawn with BANDIT_DEMO_PROBABILITIES."""
    if spec["task"] == "bandit":
        return [str(rng.choice(list(BANDIT_ARMS), p=BANDIT_DEMO_PROBABILITIES))]
    length = int(rng.integers(2, MAX_COMPLETION))  # words, in [2, MAX_COMPLETION - 1]
    words = [str(rng.choice(prompt))] if rng.random() < DEMO_TOPIC_PROBABILITY else []
    words += list(rng.choice(POSITIVE + NEGATIVE + FILLERS, size=length - len(words)))
    return words + ["<eos>"]


def encode(spec: dict, prompt: list, completion: list) -> list:
    """Token ids of "<bos> prompt <sep> completion"; the words must be in the vocabulary."""
    index = {word: i for i, word in enumerate(spec["vocab"])}
    return [index[word] for word in ["<bos>", *prompt, "<sep>", *completion]]


# ---------------------------------------------------------------------------------------- Policy
class GRULanguageModel(nn.Module):
    """tokens (batch, length) -> next-token logits (batch, length, vocab); a one-layer GRU."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple:
        outputs, state = self.gru(self.embedding(tokens), state)
        return self.head(outputs), state


@torch.no_grad()
def sample(model: GRULanguageModel, spec: dict, prompts: list, generator: torch.Generator,
           temperature: float = 1.0) -> list:
    """Completions (lists of words, "<eos>" included when reached) of every prompt at once, each token drawn
    from softmax(logits / temperature) until "<eos>" or the spec's max_completion tokens."""
    device = next(model.parameters()).device
    tokens = torch.tensor([encode(spec, prompt, []) for prompt in prompts], device=device)  # (batch, prompt tokens)
    logits, state = model(tokens)
    eos = spec["vocab"].index("<eos>")
    completions = torch.zeros((len(prompts), spec["max_completion"]), dtype=torch.long, device=device)
    for t in range(spec["max_completion"]):
        probabilities = (logits[:, -1] / temperature).softmax(-1)
        next_token = torch.multinomial(probabilities.cpu(), 1, generator=generator).to(device)  # (batch, 1)
        completions[:, t] = next_token[:, 0]
        logits, state = model(next_token, state)
    words = []
    for row in completions.tolist():
        row = row[:row.index(eos) + 1] if eos in row else row
        words.append([spec["vocab"][token] for token in row])
    return words


def completion_loss(model: GRULanguageModel, batch: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each next token, averaged over the completion tokens only (batch, length)."""
    logits, _ = model(batch[:, :-1])
    token_losses = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")  # (batch, length - 1)
    mask = completion_mask[:, 1:]
    return (token_losses * mask).sum() / mask.sum()


def pad(sequences: list, prompt_tokens: int) -> tuple:
    """(batch, longest) token ids padded with 0, and the mask of the completion tokens."""
    longest = max(len(sequence) for sequence in sequences)
    batch = torch.zeros((len(sequences), longest), dtype=torch.long)
    mask = torch.zeros((len(sequences), longest))
    for i, sequence in enumerate(sequences):
        batch[i, :len(sequence)] = torch.tensor(sequence)
        mask[i, prompt_tokens:len(sequence)] = 1.0
    return batch, mask


def label_pairs(model: GRULanguageModel, spec: dict, num_pairs: int, label_temperature: float,
                rng: np.random.Generator, generator: torch.Generator) -> list:
    """Pairs of the reference's own samples for random prompts, labelled by a noisy Bradley-Terry "person":
    y1 is chosen with probability sigmoid((r*(y1) - r*(y2)) / label_temperature). Pairs of equal samples
    are drawn again (they carry no preference)."""
    rows = []
    while len(rows) < num_pairs:
        prompts = [sample_prompt(spec, rng) for _ in range(num_pairs - len(rows))]
        first, second = sample(model, spec, prompts, generator), sample(model, spec, prompts, generator)
        for prompt, y1, y2 in zip(prompts, first, second):
            if y1 != y2:
                chosen, rejected = label(spec, prompt, y1, y2, label_temperature, rng)
                rows.append({"prompt": " ".join(prompt), "chosen": " ".join(chosen), "rejected": " ".join(rejected)})
    return rows


def label(spec: dict, prompt: list, y1: list, y2: list, label_temperature: float, rng: np.random.Generator) -> tuple:
    """(chosen, rejected) as a noisy person would order them: y1 first with probability
    sigmoid((r*(x, y1) - r*(x, y2)) / label_temperature) (the Bradley-Terry model, Eq. 1 of Ouyang et al. 2022)."""
    margin = (true_reward(spec, prompt, y1) - true_reward(spec, prompt, y2)) / label_temperature
    return (y1, y2) if rng.random() < 1.0 / (1.0 + np.exp(-margin)) else (y2, y1)


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
    if script != "rlhf_sft.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of rlhf_sft.py")
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
    for name in ("num_demonstrations", "batch_size", "embedding_size", "hidden_size"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.train_steps < 0 or args.num_pairs < 0:
        fail(f"--train-steps and --num-pairs must be >= 0; got {args.train_steps}, {args.num_pairs}")
    if args.train_steps == 0 and args.model_path is None:
        fail("--train-steps 0 only evaluates a saved reference: give it with --model-path")
    if args.train_steps > 0 and args.num_demonstrations < 2:  # a tenth (at least one) is held out for the test loss
        fail(f"--num-demonstrations must be >= 2 to train (one is held out); got {args.num_demonstrations}")
    if not 0 < args.learning_rate < np.inf or args.label_temperature <= 0:
        fail(f"--learning-rate must be > 0 and finite, --label-temperature > 0; got {args.learning_rate}, {args.label_temperature}")
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
    rng = np.random.default_rng(args.seed)  # prompts, demonstrations and labels
    generator = torch.Generator().manual_seed(args.seed)  # the model's samples
    spec = task_spec(args.task)
    model = GRULanguageModel(len(spec["vocab"]), args.embedding_size, args.hidden_size).to(device)
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            if saved.get("script", "rlhf_sft.py") != "rlhf_sft.py":  # files saved before the stages named themselves: none
                fail(f"--model-path {args.model_path} was saved by {saved['script']}; it takes a reference (rlhf_sft.py --save-model)")
            model.load_state_dict(saved["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} is not a reference of this task and size: {str(error).splitlines()[0]}")
        if saved.get("spec") != spec:
            fail(f"--model-path {args.model_path} was trained on another task spec (vocabulary or reward)")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
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
        train_log.writerow(["step", "sft_loss", "wall_time"])
    else:  # go on where the checkpoint was written: its log rows (none written after it), weights, batches
        log_file.write(resumed["train_log_csv"])
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        first_step = resumed["step"] + 1

    # ---- demonstrations: (prompt, completion) from the grammar, tokenised; 10% held out
    prompt_tokens = 1 + spec["prompt_length"] + 1  # <bos> prompt <sep>
    demos = []
    for _ in range(args.num_demonstrations):
        prompt = sample_prompt(spec, rng)
        demos.append(encode(spec, prompt, demonstration(spec, prompt, rng)))
    held_out = max(1, args.num_demonstrations // 10)
    train_demos, test_batch = demos[held_out:], pad(demos[:held_out], prompt_tokens)
    if resumed is not None:  # the demonstrations drew from rng first: its batches go on from the checkpoint
        rng.bit_generator.state = resumed["batch_rng"]

    # ---- supervised fine-tuning: next-token cross-entropy on the completion tokens
    start_time, last_print, loss = time.time(), time.time(), torch.tensor(float("nan"))
    try:
        for step in range(first_step, args.train_steps + 1):
            picks = rng.integers(len(train_demos), size=args.batch_size)
            batch, mask = pad([train_demos[i] for i in picks], prompt_tokens)
            loss = completion_loss(model, batch.to(device), mask.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % LOG_EVERY_STEPS == 0 or step == args.train_steps:
                if not torch.isfinite(loss):
                    fail(f"the SFT loss became {loss.item()} at step {step}")
                train_log.writerow([step, f"{loss.item():.6f}", f"{time.time() - start_time:.3f}"])
                figure_log.log({"losses/sft_loss": loss.item(),
                                "charts/steps_per_second": (step - first_step + 1) / max(time.time() - start_time, 1e-9)},
                               step=step)
            if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.train_steps:
                log_file.flush()
                with open(log_path) as rows:
                    train_log_csv = rows.read()
                write_checkpoint({"script": "rlhf_sft.py", "args": vars(args), "run_dir": run_dir, "step": step,
                                  "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "batch_rng": rng.bit_generator.state, "train_log_csv": train_log_csv,
                                  "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb else None},
                                 checkpoint_dir, step)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                print(f"step {step:,}/{args.train_steps:,} | loss {loss.item():.3f} | "
                      f"{(step - first_step + 1) / (time.time() - start_time):,.0f} steps/s")
    except KeyboardInterrupt:
        print("interrupted: evaluating and saving what was learned")
    train_time = time.time() - start_time
    log_file.close()

    # ---- evaluate: held-out completion loss (the grammar's own entropy is its floor) and the hidden reward;
    # evaluation and labelling draw apart from training, so a reloaded reference gives the same figures and pairs
    rng = np.random.default_rng(args.seed + EVAL_SEED_OFFSET)
    generator = torch.Generator().manual_seed(args.seed + EVAL_SEED_OFFSET)
    with torch.no_grad():
        test_loss = completion_loss(model, test_batch[0].to(device), test_batch[1].to(device)).item()
    eval_prompts = [sample_prompt(spec, rng) for _ in range(EVAL_SAMPLES)]
    rewards = [true_reward(spec, prompt, completion)
               for prompt, completion in zip(eval_prompts, sample(model, spec, eval_prompts, generator))]
    demo_rewards = [true_reward(spec, prompt, demonstration(spec, prompt, rng)) for prompt in eval_prompts]
    if args.save_model:
        torch.save({"script": "rlhf_sft.py", "model": model.state_dict(), "spec": spec, "args": vars(args),
                    "sizes": {"embedding_size": args.embedding_size, "hidden_size": args.hidden_size}},
                   os.path.join(run_dir, "reference.pt"))

    # ---- the preference dataset: pairs of the reference's samples, labelled by the noisy hidden reward
    pairs = label_pairs(model, spec, args.num_pairs, args.label_temperature, rng, generator)
    with open(os.path.join(run_dir, "preferences.jsonl"), "w") as file:
        for row in pairs:
            file.write(json.dumps(row) + "\n")

    summary = {"args": vars(args), "global_step": args.train_steps, "heldout_completion_loss": test_loss,
               "reference_true_reward_mean": float(np.mean(rewards)), "demonstration_true_reward_mean": float(np.mean(demo_rewards)),
               "num_pairs": len(pairs), "wall_time": time.time() - start_time, "train_time": train_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/heldout_completion_loss": test_loss, "eval/true_reward_mean": summary["reference_true_reward_mean"]},
                   step=args.train_steps)
    figure_log.close()
    print(f"{run_name}: held-out completion loss {test_loss:.3f} | reference's mean hidden reward "
          f"{summary['reference_true_reward_mean']:.2f} (demonstrations {summary['demonstration_true_reward_mean']:.2f}) | "
          f"{len(pairs):,} preference pairs in {run_dir}/preferences.jsonl")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "heldout_completion_loss": test_loss, "true_reward_mean": summary["reference_true_reward_mean"],
            "wall_time": summary["wall_time"]}


if __name__ == "__main__":
    train(tyro.cli(Args))
