"""RLHF, stage 2: a reward model trained on preference pairs with the Bradley-Terry loss.

Given pairs (prompt x, chosen y_c, rejected y_r), the reward model r_theta(x, y) is trained to rank the
chosen completion higher: loss = -log sigmoid(r_theta(x, y_c) - r_theta(x, y_r)) (Eq. 1 of Ouyang et al.
2022; the Bradley-Terry model of Bradley & Terry 1952, as in Christiano et al. 2017). Like InstructGPT's,
it starts from the SFT reference (stage 1, rlhf_sft.py): the reference's embedding and GRU read the
sequence, and a new linear head turns the state after the last token into one number. Only differences
of r_theta are learned, so it is defined up to a constant; the mean and spread of its scores on the
file's completions (rlhf_sft.py's are the reference's own samples) are saved with it, for the policy
stages to normalise by.

How good can it get? The labels are noisy: the "person" preferred y1 with probability sigmoid((r*(y1) -
r*(y2)) / T). So no model beats the Bayes-optimal accuracy, the accuracy of the hidden reward r* itself
on the same held-out labels; this script reports both. (Preferences a user brings are scored by the
reference's task's r* all the same: there it is r*'s accuracy on labels r* did not make, not a bound.) Papers:
https://arxiv.org/abs/2203.02155, https://arxiv.org/abs/1706.03741.

Input: the reference checkpoint (its task spec: vocabulary and hidden reward) and a JSONL file of
{"prompt", "chosen", "rejected"} lines of space-separated words (rlhf_sft.py writes one; bring your own
in the same format: words outside the reference's vocabulary are refused). 10% of the pairs are held out.

    python algorithms/rlhf_reward_model.py --reference-path runs/rlhf__rlhf_sft__1__.../reference.pt \\
        --preferences runs/rlhf__rlhf_sft__1__.../preferences.jsonl --save-model
    python algorithms/rlhf_reward_model.py ... --model-path runs/.../reward_model.pt --train-steps 0   # evaluate

Resume: `--checkpoint-every N` writes the reward model, its optimizer, the batch generator's state, the step and
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

EVALUATION_FIGURES = ("heldout_accuracy", "heldout_loss")  # a reloaded model gives the same
SCORE_SAMPLES = 2_000  # reference samples for the mean and spread of the scores, and the correlation with r*
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
    """save the reward model to runs/{run_name}/reward_model.pt (the PPO stage reads it)"""
    model_path: Optional[str] = None
    """load a saved reward model before training; with --train-steps 0 this only evaluates it"""
    reference_path: str = "reference.pt"
    """the SFT reference checkpoint (rlhf_sft.py --save-model): the task spec and the trunk to start from"""
    preferences: str = "preferences.jsonl"
    """the preference pairs: JSONL lines {"prompt", "chosen", "rejected"} of space-separated words"""
    train_steps: int = 600
    """gradient steps (seed 1, 12,000 pairs: 600 reach held-out 0.785 against the Bayes-optimal 0.807; 2,000 overfit)"""
    batch_size: int = 64
    """pairs per gradient step"""
    learning_rate: float = 1e-3
    """Adam step size"""
    heldout_fraction: float = 0.1
    """share of the pairs held out to measure accuracy"""
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


def pad(sequences: list) -> tuple:
    """(batch, longest) token ids padded with 0 and the index of each sequence's last token."""
    batch = torch.zeros((len(sequences), max(len(sequence) for sequence in sequences)), dtype=torch.long)
    for i, sequence in enumerate(sequences):
        batch[i, :len(sequence)] = torch.tensor(sequence)
    return batch, torch.tensor([len(sequence) - 1 for sequence in sequences])


# ---------------------------------------------------------------------------------------- Model
class RewardModel(nn.Module):
    """tokens (batch, length) -> one score per sequence, read from the GRU state after its last token."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.gru(self.embedding(tokens))  # (batch, length, hidden)
        return self.head(outputs[torch.arange(len(tokens)), last]).squeeze(-1)  # (batch,)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r(x, y_c) - r(x, y_r)), averaged (Eq. 1 of Ouyang et al. 2022)."""
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


def score_pairs(model: RewardModel, spec: dict, pairs: list, device: torch.device) -> tuple:
    """Scores of the chosen and of the rejected completions, (len(pairs),) each."""
    chosen = pad([encode(spec, prompt, y) for prompt, y, _ in pairs])
    rejected = pad([encode(spec, prompt, y) for prompt, _, y in pairs])
    return (model(chosen[0].to(device), chosen[1].to(device)), model(rejected[0].to(device), rejected[1].to(device)))


def bayes_accuracy(spec: dict, pairs: list) -> float:
    """The accuracy of the hidden reward itself on these labels: r*(chosen) > r*(rejected), ties half right."""
    margins = [true_reward(spec, prompt, c) - true_reward(spec, prompt, r) for prompt, c, r in pairs]
    return float(np.mean([1.0 if margin > 0 else 0.5 if margin == 0 else 0.0 for margin in margins]))


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
    if script != "rlhf_reward_model.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of rlhf_reward_model.py")
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
    if args.train_steps < 0 or args.batch_size < 1:
        fail(f"--train-steps must be >= 0 and --batch-size >= 1; got {args.train_steps}, {args.batch_size}")
    if args.train_steps == 0 and args.model_path is None:
        fail("--train-steps 0 only evaluates a saved reward model: give it with --model-path")
    if not 0 < args.learning_rate < np.inf or not 0.0 < args.heldout_fraction < 1.0:
        fail(f"--learning-rate must be > 0 and finite, --heldout-fraction in (0, 1); got {args.learning_rate}, {args.heldout_fraction}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 (0: no checkpoints); got {args.checkpoint_every}")
    if args.resume is not None and (not os.path.isfile(args.resume) or args.model_path is not None):
        fail(f"--resume {args.resume} must be a checkpoint file, and not combined with --model-path")


def load_checkpoint(path: str, flag: str, made_by: str, scripts: tuple, device: torch.device) -> dict:
    """A reference (rlhf_sft.py) or reward model checkpoint: weights, task spec and sizes; one line and
    exit 2 if the file is missing, not one, or saved by a script other than `scripts`."""
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


def train(args: Args) -> dict:
    check_args(args)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    resumed = load_resume(args) if args.resume is not None else None
    # a saved reward model carries the task spec and sizes; a new one takes them, and its trunk, from the reference
    saved = load_checkpoint(args.model_path, "--model-path", "a reward model (rlhf_reward_model.py --save-model)",
                            ("rlhf_reward_model.py",), device) if args.model_path is not None else None
    reference = saved or load_checkpoint(args.reference_path, "--reference-path",
                                         "an rlhf_sft.py reference (made with --save-model)", ("rlhf_sft.py",), device)
    spec, sizes = reference["spec"], reference["sizes"]
    if not os.path.isfile(args.preferences):
        fail(f"--preferences {args.preferences} is not a file")
    pairs = read_pairs(args.preferences, spec)
    rng = np.random.default_rng(args.seed)  # the split and the batches
    order = rng.permutation(len(pairs))
    held_out = max(1, int(len(pairs) * args.heldout_fraction))
    test_pairs, train_pairs = [pairs[i] for i in order[:held_out]], [pairs[i] for i in order[held_out:]]

    model = RewardModel(len(spec["vocab"]), sizes["embedding_size"], sizes["hidden_size"]).to(device)
    # InstructGPT starts its reward model from the SFT model: here the reference's embedding and GRU
    trunk = {name: value for name, value in reference["model"].items() if not name.startswith("head")}
    try:
        model.load_state_dict(saved["model"] if saved else trunk, strict=saved is not None)
    except RuntimeError as error:
        fail(f"{'--model-path' if saved else '--reference-path'} does not fit a reward model: {str(error).splitlines()[0]}")
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
        train_log.writerow(["step", "bt_loss", "batch_accuracy", "wall_time"])
    else:  # go on where the checkpoint was written: its log rows (none written after it), weights, batches
        log_file.write(resumed["train_log_csv"])
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        rng.bit_generator.state = resumed["batch_rng"]
        first_step = resumed["step"] + 1

    # ---- training: the Bradley-Terry loss on batches of training pairs
    start_time, last_print = time.time(), time.time()
    try:
        for step in range(first_step, args.train_steps + 1):
            batch = [train_pairs[i] for i in rng.integers(len(train_pairs), size=args.batch_size)]
            chosen_scores, rejected_scores = score_pairs(model, spec, batch, device)
            loss = bradley_terry_loss(chosen_scores, rejected_scores)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % LOG_EVERY_STEPS == 0 or step == args.train_steps:
                if not torch.isfinite(loss):
                    fail(f"the Bradley-Terry loss became {loss.item()} at step {step}")
                accuracy = (chosen_scores > rejected_scores).float().mean().item()
                train_log.writerow([step, f"{loss.item():.6f}", f"{accuracy:.4f}", f"{time.time() - start_time:.3f}"])
                figure_log.log({"losses/bt_loss": loss.item(), "charts/batch_accuracy": accuracy,
                                "charts/steps_per_second": (step - first_step + 1) / max(time.time() - start_time, 1e-9)},
                               step=step)
            if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.train_steps:
                log_file.flush()
                with open(log_path) as rows:
                    train_log_csv = rows.read()
                write_checkpoint({"script": "rlhf_reward_model.py", "args": vars(args), "run_dir": run_dir, "step": step,
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
    log_file.close()
    train_time = time.time() - start_time

    # ---- evaluation: held-out accuracy beside the Bayes-optimal accuracy of r* on the same labels
    with torch.no_grad():
        chosen_scores, rejected_scores = score_pairs(model, spec, test_pairs, device)
        heldout_loss = bradley_terry_loss(chosen_scores, rejected_scores).item()
        heldout_accuracy = (chosen_scores > rejected_scores).float().mean().item()
        # the scores of every completion in the file (chosen and rejected alike): their mean and spread
        # normalise the reward for the policy stages; their correlation with r* says how much of it was learned
        completions = [(prompt, y) for prompt, c, r in pairs for y in (c, r)][:SCORE_SAMPLES]
        tokens = pad([encode(spec, prompt, y) for prompt, y in completions])
        scores = model(tokens[0].to(device), tokens[1].to(device)).cpu().numpy()
    hidden = np.array([true_reward(spec, prompt, y) for prompt, y in completions])
    summary = {"args": vars(args), "global_step": args.train_steps, "num_pairs": len(pairs), "heldout_pairs": held_out,
               "heldout_loss": heldout_loss, "heldout_accuracy": heldout_accuracy,
               "bayes_optimal_accuracy": bayes_accuracy(spec, test_pairs),
               "score_mean": float(scores.mean()), "score_std": float(scores.std()),
               "correlation_with_hidden_reward": float(np.corrcoef(scores, hidden)[0, 1]),
               "wall_time": time.time() - start_time, "train_time": train_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}}
    if args.save_model:
        torch.save({"script": "rlhf_reward_model.py", "model": model.state_dict(), "spec": spec, "sizes": sizes, "args": vars(args),
                    "score_mean": summary["score_mean"], "score_std": summary["score_std"]},
                   os.path.join(run_dir, "reward_model.pt"))
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"eval/heldout_accuracy": heldout_accuracy, "eval/bayes_optimal_accuracy": summary["bayes_optimal_accuracy"],
                    "eval/correlation_with_hidden_reward": summary["correlation_with_hidden_reward"]}, step=args.train_steps)
    figure_log.close()
    print(f"{run_name}: held-out accuracy {heldout_accuracy:.3f} (Bayes-optimal {summary['bayes_optimal_accuracy']:.3f}) "
          f"on {held_out:,} pairs | correlation with the hidden reward {summary['correlation_with_hidden_reward']:.3f}")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "heldout_accuracy": heldout_accuracy,
            "bayes_optimal_accuracy": summary["bayes_optimal_accuracy"], "wall_time": summary["wall_time"]}


if __name__ == "__main__":
    train(tyro.cli(Args))
