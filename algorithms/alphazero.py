"""AlphaZero: tree search guided by a policy-value network that learns from its own games (Silver et al. 2017, 2018).

A network f(s) = (p, v) gives move probabilities and the expected outcome for the player to move. Each move of
self-play runs simulations of PUCT search: from the root, pick the child maximising Q(s, a) + c P(s, a)
sqrt(N(s)) / (1 + N(s, a)), add the first unexpanded position to the tree with the network's p as priors and
back its v up the path (no rollouts). Dirichlet noise on the root priors keeps self-play exploring; the move
is drawn from the visit counts (temperature 1) for the first moves of a game, then the most visited. Every
position is stored with its visit distribution pi and the game's final outcome z from the mover's view, and
the network is trained on l = (z - v)^2 - pi . log p + c ||theta||^2 (Eq. 1 of Silver et al. 2017; here
c = --weight-decay / 2, Adam's L2 term).
Papers: https://doi.org/10.1038/nature24270, https://doi.org/10.1126/science.aar6404.

Games come from OpenSpiel: any two-player, zero-sum, perfect-information, deterministic, turn-taking game
(tic-tac-toe, Connect Four, hex, ...). Self-play runs --num-envs games in lockstep so that one batched network
call evaluates a leaf of every game. Board symmetries augment the samples where the game has them (tic-tac-toe:
the 8 of the square; Connect Four: the mirror). The budget counts self-play moves (--total-timesteps);
episodes.csv has one row per self-play game (return: player 0's outcome). Every --eval-every moves, and at the
end, the greedy player (no noise, most visited move) plays OpenSpiel's C++ MCTSBot with random rollouts (or
random play), colours alternating; evaluations.json keeps the curve.

    python algorithms/alphazero.py --game tic_tac_toe --save-model                 # a few minutes
    python algorithms/alphazero.py --game connect_four --total-timesteps 300000 --num-simulations 100
    python algorithms/alphazero.py --model-path runs/.../alphazero.pt --total-timesteps 0 --eval-episodes 100
    python algorithms/alphazero.py --model-path runs/.../alphazero.pt --play first    # you against it

Long runs resume: `--checkpoint-every 50000 --checkpoint-dir ~/checkpoints` writes everything the run needs
to go on (network, optimizer, the used part of the replay buffer, the games in progress as their move lists,
every random state, counters, the episodes and evaluations so far); rerunning the same command with
`--resume PATH` continues it in its run directory, bitwise on CPU as if it had never stopped.
"""

import csv
import difflib
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
from importlib.metadata import version
from typing import Literal, Optional

import numpy as np
import pyspiel
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

PROGRESS_SECONDS = 5.0  # at most one progress line this often
EVAL_SEED_OFFSET = 10_000  # evaluation games play seed + this, apart from training
OPENSPIEL_UCT_C, OPENSPIEL_MAX_MEMORY_MB = 2.0, 1000  # the evaluation opponent: MCTSBot's defaults


# ---------------------------------------------------------------------------------------- Args
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of random, numpy and torch"""
    torch_deterministic: bool = True
    """make cudnn deterministic (torch.backends.cudnn.deterministic)"""
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
    """save the network to runs/{run_name}/{exp_name}.pt"""
    model_path: Optional[str] = None
    """load the network from this file before training (with --total-timesteps 0: only evaluate)"""
    checkpoint_every: int = 0
    """write a checkpoint to resume from every this many self-play moves (0: never); the latest two are kept"""
    checkpoint_dir: Optional[str] = None
    """where checkpoints go; None: runs/{run_name}/checkpoints (keep a long run's outside the work tree)"""
    resume: Optional[str] = None
    """a checkpoint to continue, given with the run's own arguments: the run goes on in its run directory"""
    game: str = "tic_tac_toe"
    """an OpenSpiel game, with parameters if any: tic_tac_toe, connect_four, "hex(board_size=5)", ..."""
    total_timesteps: int = 60_000
    """self-play moves (all games together)"""
    num_envs: int = 32
    """self-play games played at once (one batched network call evaluates a leaf of each)"""
    num_simulations: int = 50
    """PUCT simulations per move, in self-play and evaluation"""
    c_puct: float = 1.25
    """the exploration constant c of PUCT (c_init of the 2018 pseudocode)"""
    dirichlet_alpha: float = 1.0
    """concentration of the root noise (0.3 for chess, 0.03 for Go: larger for fewer legal moves)"""
    dirichlet_epsilon: float = 0.25
    """share of the noise in the root priors during self-play"""
    temperature_moves: int = 6
    """the first this many moves of a self-play game are drawn in proportion to the visits; then the most visited
    (tic-tac-toe: at 4, one seed of five never learnt a rare line after an edge opening)"""
    hidden_size: int = 128
    """width of the network's fully connected trunk"""
    num_layers: int = 3
    """layers of the trunk"""
    learning_rate: float = 1e-3
    """Adam's step size"""
    weight_decay: float = 1e-4
    """Adam's L2 term: it adds weight_decay * theta to the gradient, which is the gradient of c ||theta||^2
    with c = weight_decay / 2 (so the default is the paper's c = 1e-4 only up to that factor of 2)"""
    buffer_size: int = 10_000
    """positions kept for training, the oldest going first (tic-tac-toe: the last ≈ 1,300 games; 50,000 kept
    the weak early games so long that seed 2 still lost lines to perfect play)"""
    batch_size: int = 128
    """positions per gradient step"""
    learning_starts: int = 1_000
    """positions stored before the first gradient step"""
    updates_per_step: int = 1
    """gradient steps after each self-play move of the --num-envs games"""
    augment: bool = True
    """train on a random board symmetry of each position (tic-tac-toe and Connect Four)"""
    eval_simulations: Optional[int] = None
    """PUCT simulations per move when evaluating (None: --num-simulations)"""
    eval_opponent: Literal["mcts", "random"] = "mcts"
    """evaluation opponent: OpenSpiel's C++ MCTSBot with one random rollout per leaf, or random play"""
    eval_opponent_simulations: int = 1000
    """the MCTSBot's simulations per move"""
    eval_every: int = 10_000
    """evaluate every this many self-play moves (0: only at the end)"""
    eval_games: int = 20
    """games of each periodic evaluation"""
    eval_episodes: int = 50
    """games of the final evaluation (colours alternate)"""
    play: Optional[Literal["first", "second"]] = None
    """play one game against the network (--model-path) in the terminal, moving first or second"""


def fail(message: str) -> None:
    """Bad input: one line on stderr and exit status 2, never a traceback."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------- Game
def load_game(name: str):
    """The OpenSpiel game, or exit 2 with one line. OpenSpiel's C++ writes its own message to stderr before
    raising, so that stream is silenced while it loads."""
    base_name = name.split("(")[0]
    if base_name not in pyspiel.registered_names():
        close = difflib.get_close_matches(base_name, pyspiel.registered_names(), n=1)
        fail(f"--game: unknown OpenSpiel game '{base_name}'." + (f" Did you mean {close[0]}?" if close else ""))
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            game = pyspiel.load_game(name)
    except pyspiel.SpielError as error:
        game = str(error)
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    if isinstance(game, str):
        fail(f"--game {name}: {game.splitlines()[0]}")
    kind = game.get_type()
    if not (game.num_players() == 2 and kind.utility == pyspiel.GameType.Utility.ZERO_SUM
            and kind.information == pyspiel.GameType.Information.PERFECT_INFORMATION
            and kind.dynamics == pyspiel.GameType.Dynamics.SEQUENTIAL
            and kind.chance_mode == pyspiel.GameType.ChanceMode.DETERMINISTIC):
        fail(f"alphazero.py needs a two-player, zero-sum, perfect-information, deterministic, turn-taking game; "
             f"{name} is not one. Try tic_tac_toe or connect_four (mcts.py also samples chance moves).")
    return game


def features(state) -> np.ndarray:
    """The network's input: OpenSpiel's observation tensor plus a one-hot of the player to move (the
    tic-tac-toe and Connect Four tensors show the board the same way to both players)."""
    to_move = np.zeros(2, np.float32)
    to_move[state.current_player()] = 1.0
    return np.concatenate([np.asarray(state.observation_tensor(), np.float32), to_move])


def symmetries(game) -> tuple:
    """Index maps (feature_maps, action_maps), one row per symmetry, identity first: a transformed
    position has features[feature_maps[k]] and policy[action_maps[k]]."""
    name = game.get_type().short_name
    planes, rows, cols = game.observation_tensor_shape() if len(game.observation_tensor_shape()) == 3 else (0, 0, 0)
    cells = np.arange(rows * cols).reshape(rows, cols)
    if name == "tic_tac_toe":  # the 8 symmetries of the square: 4 rotations, each with and without a flip
        boards = [np.rot90(board, turns) for board in (cells, cells.T) for turns in range(4)]
    elif name == "connect_four":  # left-right mirror (gravity breaks the others)
        boards = [cells, cells[:, ::-1]]
    else:
        boards = [cells]
    size = planes * rows * cols
    feature_maps, action_maps = [], []
    for board in boards:
        cell_map = board.reshape(-1)
        board_map = np.concatenate([plane * rows * cols + cell_map for plane in range(planes)]) if planes else []
        feature_maps.append(np.concatenate([board_map, np.arange(size, game.observation_tensor_size() + 2)]))
        action_maps.append(cell_map if name == "tic_tac_toe" else board[0] if name == "connect_four"
                           else np.arange(game.num_distinct_actions()))
    return np.stack(feature_maps).astype(np.int64), np.stack(action_maps).astype(np.int64)


# ---------------------------------------------------------------------------------------- Network
class PolicyValueNet(nn.Module):
    """f(s) = (p, v): a fully connected trunk, a policy head (logits over all moves) and a value head
    (tanh: the expected outcome in [-1, 1] for the player to move)."""

    def __init__(self, input_size: int, num_actions: int, hidden_size: int, num_layers: int):
        super().__init__()
        layers, size = [], input_size
        for _ in range(num_layers):
            layers += [nn.Linear(size, hidden_size), nn.ReLU()]
            size = hidden_size
        self.trunk = nn.Sequential(*layers)
        self.policy_head = nn.Linear(hidden_size, num_actions)
        self.value_head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor, legal: torch.Tensor) -> tuple:
        """x (batch, input_size), legal (batch, num_actions) bool -> log p over legal moves
        (-inf elsewhere), v (batch,)."""
        hidden = self.trunk(x)
        logits = self.policy_head(hidden).masked_fill(~legal, float("-inf"))
        return F.log_softmax(logits, dim=1), torch.tanh(self.value_head(hidden)).squeeze(1)


def evaluate_states(net: PolicyValueNet, states: list, device: torch.device) -> tuple:
    """One batched call for many positions: priors (n, num_actions) and values (n,) as numpy."""
    x = torch.as_tensor(np.stack([features(state) for state in states]), device=device)
    legal = torch.as_tensor(np.array([state.legal_actions_mask() for state in states], bool), device=device)
    with torch.inference_mode():
        log_priors, values = net(x, legal)
    return log_priors.exp().cpu().numpy(), values.cpu().numpy()


# ---------------------------------------------------------------------------------------- Search
class Node:
    """A position in the tree, holding the statistics of its moves: N(s, a), the sum W(s, a) of values
    for the player to move here, Q(s, a) = W / N (0 while unvisited) and the prior P(s, a). visits is
    N(s): its expansion plus every simulation through it."""

    __slots__ = ("player", "actions", "priors", "child_visits", "child_values", "child_q", "children", "visits")

    def __init__(self, state, priors: np.ndarray):
        self.player = state.current_player()
        self.actions = np.array(state.legal_actions())
        self.priors = priors[self.actions]
        self.child_visits = np.zeros(len(self.actions))
        self.child_values = np.zeros(len(self.actions))
        self.child_q = np.zeros(len(self.actions))
        self.children = [None] * len(self.actions)  # a Node once expanded (terminal positions stay None)
        self.visits = 1


def puct_scores(node: Node, c_puct: float) -> np.ndarray:
    """Q(s, a) + c P(s, a) sqrt(N(s)) / (1 + N(s, a)) (the hot spot of the search: four array operations)."""
    return node.child_q + (c_puct * math.sqrt(node.visits)) * node.priors / (1.0 + node.child_visits)


def backup(path: list, values_by_player) -> None:
    """Every (node, move) on the path gains a visit and the value for the player who chose the move."""
    for node, index in path:
        node.child_visits[index] += 1
        node.child_values[index] += values_by_player[node.player]
        node.child_q[index] = node.child_values[index] / node.child_visits[index]
        node.visits += 1


def add_dirichlet_noise(node: Node, alpha: float, epsilon: float, rng: np.random.Generator) -> None:
    """P(s, a) = (1 - epsilon) p_a + epsilon eta_a, eta ~ Dir(alpha), at the root of self-play only."""
    node.priors = (1 - epsilon) * node.priors + epsilon * rng.dirichlet(np.full(len(node.actions), alpha))


def visit_policy(root: Node, num_actions: int) -> np.ndarray:
    """pi(a) = N(root, a) / sum_b N(root, b) over all moves (0 for illegal ones): the policy target."""
    policy = np.zeros(num_actions, np.float32)
    policy[root.actions] = root.child_visits / root.child_visits.sum()
    return policy


def search(states: list, net: PolicyValueNet, args: Args, num_simulations: int, device: torch.device,
           noise_rng: Optional[np.random.Generator]) -> list:
    """PUCT search from each state (none terminal), all at once: simulation k of every tree ends at a leaf,
    and one network call evaluates all those leaves. Noise at the roots when noise_rng is given."""
    priors, _ = evaluate_states(net, states, device)
    roots = [Node(state, prior) for state, prior in zip(states, priors)]
    if noise_rng is not None:
        for root in roots:
            add_dirichlet_noise(root, args.dirichlet_alpha, args.dirichlet_epsilon, noise_rng)
    for _ in range(num_simulations):
        pending = []  # (path, parent, index, leaf state) to evaluate together
        for root, state in zip(roots, states):
            node, path, working_state = root, [], state.clone()
            while True:  # selection, down to a move whose position is not in the tree yet
                index = int(puct_scores(node, args.c_puct).argmax())
                path.append((node, index))
                working_state.apply_action(int(node.actions[index]))
                if node.children[index] is None:
                    break
                node = node.children[index]
            if working_state.is_terminal():  # the game's result is exact: back it up now
                backup(path, working_state.returns())
            else:
                pending.append((path, node, index, working_state))
        if pending:  # expansion and evaluation, one batch for every tree
            leaf_priors, leaf_values = evaluate_states(net, [leaf for *_, leaf in pending], device)
            for (path, parent, index, leaf), prior, value in zip(pending, leaf_priors, leaf_values):
                parent.children[index] = Node(leaf, prior)
                mover = leaf.current_player()  # v is the value for the player to move at the leaf
                backup(path, {mover: value, 1 - mover: -value})
    return roots


# ---------------------------------------------------------------------------------------- Replay
class ReplayBuffer:
    """Positions (features, legal moves, visit policy pi, outcome z for the mover) in a ring."""

    def __init__(self, capacity: int, input_size: int, num_actions: int):
        self.features = np.zeros((capacity, input_size), np.float32)
        self.legal = np.zeros((capacity, num_actions), bool)
        self.policies = np.zeros((capacity, num_actions), np.float32)
        self.outcomes = np.zeros(capacity, np.float32)
        self.capacity, self.position, self.size = capacity, 0, 0

    def add(self, features, legal, policy, outcome) -> None:
        self.features[self.position], self.legal[self.position] = features, legal
        self.policies[self.position], self.outcomes[self.position] = policy, outcome
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict:
        """The used part only (a checkpoint early in a run stays small)."""
        return {"features": self.features[:self.size].copy(), "legal": self.legal[:self.size].copy(),
                "policies": self.policies[:self.size].copy(), "outcomes": self.outcomes[:self.size].copy(),
                "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        self.features[:size], self.legal[:size] = state["features"], state["legal"]
        self.policies[:size], self.outcomes[:size] = state["policies"], state["outcomes"]
        self.position, self.size = state["position"], size

    def sample(self, batch_size: int, rng: np.random.Generator, maps: Optional[tuple]) -> tuple:
        """A uniform batch; with maps (from symmetries), each position seen through a random symmetry."""
        index = rng.integers(self.size, size=batch_size)
        x, legal, policy = self.features[index], self.legal[index], self.policies[index]
        if maps is not None:
            feature_maps, action_maps = maps
            which = rng.integers(len(feature_maps), size=batch_size)
            rows = np.arange(batch_size)[:, None]
            x, legal, policy = x[rows, feature_maps[which]], legal[rows, action_maps[which]], policy[rows, action_maps[which]]
        return x, legal, policy, self.outcomes[index]


def alphazero_loss(log_priors, values, target_policies, target_outcomes) -> tuple:
    """(z - v)^2 and -pi . log p, batch means (Eq. 1 of Silver et al. 2017; the L2 term is Adam's
    weight decay). Illegal moves have pi = 0, so their -inf log p is left out."""
    value_loss = F.mse_loss(values, target_outcomes)
    policy_loss = -(target_policies * log_priors.masked_fill(target_policies == 0, 0.0)).sum(dim=1).mean()
    return value_loss, policy_loss


# ---------------------------------------------------------------------------------------- Evaluation
def make_opponent(args: Args, game, seed: int):
    """state -> action: OpenSpiel's C++ MCTSBot with one random rollout per leaf, or random play."""
    if args.eval_opponent == "random":
        rng = random.Random(seed)
        return lambda state: rng.choice(state.legal_actions())
    evaluator = pyspiel.RandomRolloutEvaluator(1, seed)
    return pyspiel.MCTSBot(game, evaluator, OPENSPIEL_UCT_C, args.eval_opponent_simulations,
                           OPENSPIEL_MAX_MEMORY_MB, False, seed, False).step  # no solver, not verbose


def greedy_moves(states: list, net: PolicyValueNet, args: Args, device: torch.device) -> list:
    """The most visited move of a noiseless search from each state (the strongest play)."""
    num_simulations = args.eval_simulations or args.num_simulations
    return [int(root.actions[np.argmax(root.child_visits)]) for root in search(states, net, args, num_simulations,
                                                                                device, None)]


def play_matches(net: PolicyValueNet, game, args: Args, num_games: int, seed: int, device: torch.device) -> list:
    """num_games against the evaluation opponent, colours alternating, played side by side so that the
    network's searches batch. Returns the outcomes from the network's view (+1 win, 0 draw, -1 loss)."""
    opponent = make_opponent(args, game, seed)
    states, sides = [game.new_initial_state() for _ in range(num_games)], [i % 2 for i in range(num_games)]
    while not all(state.is_terminal() for state in states):
        for state, side in zip(states, sides):  # the opponent's moves, until the network is to move everywhere
            while not state.is_terminal() and state.current_player() != side:
                state.apply_action(opponent(state))
        waiting = [state for state in states if not state.is_terminal()]
        if waiting:
            for state, action in zip(waiting, greedy_moves(waiting, net, args, device)):
                state.apply_action(action)
    return [state.returns()[side] for state, side in zip(states, sides)]


def play_against_human(args: Args, game, net: PolicyValueNet, device: torch.device) -> None:
    """One game in the terminal: the board after each move, the legal moves by number and name."""
    state, human = game.new_initial_state(), 0 if args.play == "first" else 1
    try:
        while not state.is_terminal():
            if state.current_player() != human:
                state.apply_action(greedy_moves([state], net, args, device)[0])
                continue
            names = {state.action_to_string(human, action): action for action in state.legal_actions()}
            print(state, "\nYour move:", ", ".join(f"{action} ({name})" for name, action in names.items()))
            answer = input("> ").strip()
            move = names.get(answer, int(answer) if answer.isdigit() else None)
            if move in state.legal_actions():
                state.apply_action(move)
            else:
                print(f"'{answer}' is not a legal move here; type one of the numbers or names above.")
    except (KeyboardInterrupt, EOFError):  # Ctrl-C or the end of the input ends the game, not the program
        print("\nGame ended.")
        return
    yours = state.returns()[human]
    print(state, f"\n{'You win' if yours > 0 else 'AlphaZero wins' if yours < 0 else 'Draw'} (your outcome {yours:+g}).")


# ---------------------------------------------------------------------------------------- Checkpoints
# What a resumed run may change: where and how often it checkpoints, logging, the device, saving.
# A run that started from a saved model (--model-path) resumes without it: --resume refuses the two together,
# and the checkpoint holds the weights reached since.
ARGS_A_RESUME_MAY_CHANGE = {"resume", "checkpoint_every", "checkpoint_dir", "track", "tensorboard", "wandb_project_name",
                            "wandb_entity", "model_path", "save_model", "cuda"}
CHECKPOINTS_KEPT = 2  # the latest two; Connect Four with 200,000 positions of replay: ≈ 250 MB each


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
    if script != "alphazero.py":
        fail(f"--resume {args.resume} is a checkpoint of {script}, not of alphazero.py")
    changed = [f"--{name.replace('_', '-')} {saved_args.get(name)} (now {value})" for name, value in vars(args).items()
               if name not in ARGS_A_RESUME_MAY_CHANGE and saved_args.get(name) != value]
    if changed:
        fail(f"--resume needs the run's own arguments; the checkpoint was made with {', '.join(changed)}")
    return checkpoint


def random_states(rng: np.random.Generator) -> dict:
    """Every random stream the run draws from, for a checkpoint."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "rng": rng.bit_generator.state}


def set_random_states(states: dict, rng: np.random.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    rng.bit_generator.state = states["rng"]


def replay_game(game, actions: list):
    """A game in progress, rebuilt from its moves (OpenSpiel states do not pickle; their histories do)."""
    state = game.new_initial_state()
    for action in actions:
        state.apply_action(action)
    return state


# ---------------------------------------------------------------------------------------- Logging
class FigureLog:
    """Sends the run's figures to Weights & Biases (--track) and/or TensorBoard (--tensorboard); both are
    imported only when asked for (they are slow to import and optional)."""

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
    if not 0 <= args.seed <= 2**31 - 1 - EVAL_SEED_OFFSET:  # OpenSpiel's bots take a signed 32-bit seed
        fail(f"--seed must be in [0, 2**31 - 1 - {EVAL_SEED_OFFSET:,}]: the evaluation opponent (OpenSpiel) is seeded "
             f"with seed + {EVAL_SEED_OFFSET:,} and takes a signed 32-bit seed; got {args.seed}")
    if not 0 < args.learning_rate < np.inf:  # a negative step climbs the loss; 0 learns nothing
        fail(f"--learning-rate must be > 0 and finite; got {args.learning_rate}")
    if not 0 <= args.weight_decay < np.inf:  # a negative L2 term would push the weights outwards (torch refuses it)
        fail(f"--weight-decay must be >= 0 and finite; got {args.weight_decay}")
    if args.eval_simulations is not None and args.eval_simulations < 1:
        fail(f"--eval-simulations must be >= 1 (or None: --num-simulations); got {args.eval_simulations}")
    for name in ("num_envs", "num_simulations", "hidden_size", "num_layers", "buffer_size", "batch_size",
                 "eval_episodes", "eval_games", "eval_opponent_simulations"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    for name in ("total_timesteps", "temperature_moves", "learning_starts", "updates_per_step", "eval_every"):
        if getattr(args, name) < 0:
            fail(f"--{name.replace('_', '-')} must be >= 0; got {getattr(args, name)}")
    if not (args.c_puct > 0 and args.dirichlet_alpha > 0 and 0 <= args.dirichlet_epsilon <= 1):
        fail(f"--c-puct and --dirichlet-alpha must be > 0, --dirichlet-epsilon in [0, 1]; got {args.c_puct}, "
             f"{args.dirichlet_alpha}, {args.dirichlet_epsilon}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size ({args.batch_size}) must not exceed --buffer-size ({args.buffer_size})")
    # learning waits for learning_starts stored positions: the buffer never holds more than buffer_size, nor
    # more than the run's moves, so a larger threshold would silently train nothing
    if args.learning_starts > args.buffer_size:
        fail(f"--learning-starts ({args.learning_starts}) must not exceed --buffer-size ({args.buffer_size})")
    if args.total_timesteps > 0 and args.updates_per_step > 0 and args.learning_starts >= args.total_timesteps:
        fail(f"--learning-starts must be < --total-timesteps ({args.total_timesteps}) when training "
             f"(--updates-per-step > 0); got {args.learning_starts}")
    if args.model_path is not None and not os.path.isfile(args.model_path):
        fail(f"--model-path {args.model_path} is not a file")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 (0: no checkpoints); got {args.checkpoint_every}")
    if args.resume is not None and (not os.path.isfile(args.resume) or args.model_path is not None):
        fail(f"--resume {args.resume} must be a checkpoint file, and not combined with --model-path")
    if args.play is not None and args.model_path is None:
        fail("--play needs --model-path (a network trained by this script)")


def train(args: Args) -> dict:
    check_args(args)
    checkpoint = load_checkpoint(args) if args.resume is not None else None
    game = load_game(args.game)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    input_size, num_actions = game.observation_tensor_size() + 2, game.num_distinct_actions()
    net = PolicyValueNet(input_size, num_actions, args.hidden_size, args.num_layers).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    if args.model_path is not None:
        try:
            saved = torch.load(args.model_path, map_location=device)
            net.load_state_dict(saved["net"])
        except (RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
            fail(f"--model-path {args.model_path} does not fit {args.game} with these args: {str(error).splitlines()[0]}")
    if args.play is not None:
        return play_against_human(args, game, net, device)
    # One torch thread: the batches are small (a leaf per game), a seed gives the same run on any core
    # count, and a second thread that spin-waits beside a busy core slows every call a hundredfold.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)  # noise, move sampling, replay sampling
    eval_seed = args.seed + EVAL_SEED_OFFSET
    maps = symmetries(game) if args.augment else None
    rb = ReplayBuffer(args.buffer_size, input_size, num_actions)

    run_name = f"{args.game}__{args.exp_name}__{args.seed}__{int(time.time())}"
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
    evaluations, episodic_returns = [], []

    def evaluate_now(num_games: int) -> list:
        net.eval()
        outcomes = play_matches(net, game, args, num_games, eval_seed, device)
        net.train()
        return outcomes

    states = [game.new_initial_state() for _ in range(args.num_envs)]
    histories = [[] for _ in range(args.num_envs)]  # per game: (features, legal, pi, player) of its positions
    global_step, updates = 0, 0
    start_time = last_print = time.time()
    # CPU seconds of this process beside the wall clock: a long run on a shared machine states both
    cpu_start = time.process_time()
    value_loss = policy_loss = torch.tensor(float("nan"))
    if checkpoint is not None:  # go on exactly where the checkpoint was written
        net.load_state_dict(checkpoint["net"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        rb.load_state_dict(checkpoint["replay_buffer"])
        states = [replay_game(game, actions) for actions in checkpoint["games"]]
        histories = checkpoint["histories"]
        set_random_states(checkpoint["random"], rng)
        global_step, updates = checkpoint["global_step"], checkpoint["updates"]
        episodic_returns, evaluations = checkpoint["episodic_returns"], checkpoint["evaluations"]
        start_time -= checkpoint["wall_time"]  # the clocks cover the whole run
        cpu_start -= checkpoint.get("cpu_time", 0.0)
    next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
    try:
        while global_step < args.total_timesteps:
            # ---- one move in every self-play game, chosen by a noisy search
            roots = search(states, net, args, args.num_simulations, device, rng)
            for i, (state, root) in enumerate(zip(states, roots)):
                policy = visit_policy(root, num_actions)
                histories[i].append((features(state), state.legal_actions_mask(), policy, state.current_player()))
                if len(histories[i]) <= args.temperature_moves:  # temperature 1: in proportion to the visits
                    action = int(rng.choice(root.actions, p=root.child_visits / root.child_visits.sum()))
                else:  # temperature -> 0: the most visited move
                    action = int(root.actions[np.argmax(root.child_visits)])
                state.apply_action(action)
                if state.is_terminal():  # every position learns the outcome from its mover's view
                    returns = state.returns()
                    for position_features, legal, target_policy, player in histories[i]:
                        rb.add(position_features, legal, target_policy, returns[player])
                    episodes_csv.writerow([global_step + i + 1, returns[0], len(histories[i]),
                                           f"{time.time() - start_time:.3f}"])
                    episodic_returns.append(returns[0])
                    figure_log.log({"charts/episodic_return": returns[0], "charts/episodic_length": len(histories[i])},
                                   step=global_step + i + 1)
                    states[i], histories[i] = game.new_initial_state(), []
            previous_step, global_step = global_step, global_step + args.num_envs

            # ---- learn from stored positions
            if rb.size >= max(args.learning_starts, args.batch_size):
                for _ in range(args.updates_per_step):
                    x, legal, target_policy, target_outcome = (torch.as_tensor(array, device=device)
                                                               for array in rb.sample(args.batch_size, rng, maps))
                    log_priors, values = net(x, legal)
                    value_loss, policy_loss = alphazero_loss(log_priors, values, target_policy, target_outcome)
                    optimizer.zero_grad()
                    (value_loss + policy_loss).backward()
                    optimizer.step()
                    updates += 1

            # ---- evaluate against the opponent now and then (the curve of strength over training)
            if args.eval_every and global_step // args.eval_every > previous_step // args.eval_every:
                outcomes = evaluate_now(args.eval_games)
                evaluations.append({"global_step": global_step, "wall_time": time.time() - start_time,
                                    "cpu_time": time.process_time() - cpu_start,
                                    "wins": outcomes.count(1.0), "draws": outcomes.count(0.0),
                                    "losses": outcomes.count(-1.0)})
                with open(os.path.join(run_dir, "evaluations.json"), "w") as file:
                    json.dump(evaluations, file, indent=2)
                figure_log.log({"eval/win_rate": outcomes.count(1.0) / len(outcomes),
                                "eval/loss_rate": outcomes.count(-1.0) / len(outcomes)}, step=global_step)
                print(f"evaluation at step {global_step:,}: {evaluations[-1]['wins']} wins, {evaluations[-1]['draws']} "
                      f"draws, {evaluations[-1]['losses']} losses against {args.eval_opponent}")
            # ---- checkpoint when one is due
            if args.checkpoint_every and global_step >= next_checkpoint_step:
                episodes_file.flush()
                with open(episodes_path, newline="") as file:
                    episodes_so_far = file.read()
                path = write_checkpoint({
                    "script": "alphazero.py", "args": vars(args), "run_dir": os.path.abspath(run_dir),
                    "global_step": global_step, "updates": updates, "episodic_returns": episodic_returns,
                    "evaluations": evaluations, "episodes_csv": episodes_so_far, "wall_time": time.time() - start_time,
                    "cpu_time": time.process_time() - cpu_start,
                    "net": net.state_dict(), "optimizer": optimizer.state_dict(), "replay_buffer": rb.state_dict(),
                    "games": [state.history() for state in states], "histories": histories,
                    "random": random_states(rng),
                    "wandb_run_id": figure_log.wandb.run.id if figure_log.wandb is not None else None,
                }, checkpoint_dir, global_step)
                print(f"checkpoint at step {global_step:,}: {path} ({os.path.getsize(path) / 1e6:,.1f} MB)")
                next_checkpoint_step = next_checkpoint(global_step, args.checkpoint_every)
            if time.time() - last_print > PROGRESS_SECONDS:
                last_print = time.time()
                episodes_file.flush()
                if not np.isfinite(value_loss.item() + policy_loss.item()) and updates:  # read back only here
                    fail(f"the loss became {value_loss.item() + policy_loss.item()} at step {global_step}")
                sps = global_step / (last_print - start_time)
                eta = int(max(args.total_timesteps - global_step, 0) / sps)
                figure_log.log({"losses/value_loss": value_loss.item(), "losses/policy_loss": policy_loss.item(),
                                "charts/SPS": sps}, step=global_step)
                print(f"step {global_step:,}/{args.total_timesteps:,} | {sps:,.0f} SPS | return (last 10) "
                      f"{np.mean(episodic_returns[-10:]) if episodic_returns else float('nan'):.1f} | games "
                      f"{len(episodic_returns):,} | value loss {value_loss.item():.3f} | policy loss "
                      f"{policy_loss.item():.3f} | ETA {eta // 60}:{eta % 60:02d}")
    except KeyboardInterrupt:
        print(f"interrupted at step {global_step:,}: evaluating and saving what was learned")
    episodes_file.close()
    wall_time, cpu_time = time.time() - start_time, time.process_time() - cpu_start
    sps = global_step / max(wall_time, 1e-9)

    if args.save_model:
        model_file = os.path.join(run_dir, f"{args.exp_name}.pt")
        torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "args": vars(args),
                    "global_step": global_step}, model_file)
        print(f"saved the model to {model_file}")
    eval_returns = evaluate_now(args.eval_episodes)
    summary = {"args": vars(args), "global_step": global_step, "updates": updates, "eval_returns": eval_returns,
               "eval_return_mean": float(np.mean(eval_returns)), "eval_return_std": float(np.std(eval_returns)),
               "evaluations": evaluations, "sps": sps, "wall_time": wall_time, "cpu_time": cpu_time,
               "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                            "open_spiel": version("open_spiel")}}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    figure_log.log({"charts/SPS": sps, "eval/return_mean": summary["eval_return_mean"],
                    "eval/return_std": summary["eval_return_std"]}, step=global_step)
    figure_log.close()
    print(f"{run_name}: {global_step:,} self-play moves in {wall_time:.1f}s ({sps:,.0f} SPS) | against "
          f"{args.eval_opponent}: {eval_returns.count(1.0)} wins, {eval_returns.count(0.0)} draws, "
          f"{eval_returns.count(-1.0)} losses in {args.eval_episodes} games")
    torch.set_num_threads(torch_threads)
    return {"run_dir": run_dir, "episodic_returns": episodic_returns, "eval_returns": eval_returns, "sps": sps,
            "wall_time": wall_time, "net": net}


if __name__ == "__main__":
    train(tyro.cli(Args))
