"""Shared helpers: discover the scripts, run them through their real command line, import them."""

import os

# Idle OpenMP threads sleep instead of spinning. With the tests spread over every core (pytest-xdist),
# a script's two torch threads spinning while another test's process holds the other core made runs
# 5x slower here (three sac.py runs side by side: 45 s against 9 s). It changes no result: the
# threads and the arithmetic are the same, only how an idle thread waits. Set before torch loads, and
# inherited by every script the tests run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import atexit  # noqa: E402
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tyro

ROOT = Path(__file__).resolve().parent.parent
ALGORITHMS = ROOT / "algorithms"
SCRIPTS = sorted(path.name for path in ALGORITHMS.glob("*.py"))

# The one entry a new script may need: arguments for a run that is tiny but still performs updates.
TINY_ARGS = {
    "a2c.py": ["--total-timesteps", "800", "--eval-episodes", "2"],
    # fork: spawned workers would each import torch anew (≈ 3 s apiece); tests/test_a3c.py covers every start method
    "a3c.py": ["--total-timesteps", "2000", "--eval-episodes", "2", "--start-method", "fork"],
    "alphazero.py": ["--total-timesteps", "256", "--num-envs", "8", "--num-simulations", "8", "--learning-starts", "32",
                     "--batch-size", "16", "--eval-episodes", "2", "--eval-every", "128", "--eval-games", "2",
                     "--eval-opponent-simulations", "50"],
    "bandits.py": ["--num-runs", "50", "--num-steps", "100"],
    "ddpg.py": ["--env-id", "Pendulum-v1", "--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "32",
                "--hidden-sizes", "32", "32", "--eval-episodes", "2"],
    "dqn.py": ["--total-timesteps", "600", "--learning-starts", "200", "--batch-size", "32", "--buffer-size", "500",
               "--max-grad-norm", "10", "--eval-episodes", "2"],
    "mcts.py": ["--num-simulations", "20", "--num-games", "4"],
    "iql.py": ["--total-timesteps", "400", "--num-envs", "2", "--learning-starts", "100", "--batch-size", "16",
               "--buffer-size", "200", "--eval-episodes", "2"],
    "mappo.py": ["--total-timesteps", "400", "--num-envs", "2", "--num-steps", "50", "--update-epochs", "2",
                 "--eval-episodes", "2"],
    "policy_iteration.py": ["--max-iterations", "3", "--eval-episodes", "10"],
    "ppo.py": ["--total-timesteps", "1024", "--num-steps", "64", "--target-kl", "0.01", "--eval-episodes", "2"],
    "ppo_continuous.py": ["--env-id", "Pendulum-v1", "--total-timesteps", "512", "--num-envs", "2", "--num-steps", "256",
                          "--num-minibatches", "4", "--update-epochs", "2", "--target-kl", "0.01", "--eval-episodes", "2"],
    "preference_ppo.py": ["--total-timesteps", "512", "--num-envs", "2", "--num-steps", "256", "--num-minibatches", "4",
                          "--update-epochs", "2", "--target-kl", "0.01", "--eval-episodes", "2", "--num-comparisons", "10",
                          "--initial-comparisons", "5", "--segment-length", "8", "--reward-model-updates", "5"],
    "q_learning.py": ["--total-timesteps", "3000", "--eval-episodes", "3"],
    "reinforce.py": ["--total-timesteps", "600", "--num-envs", "2", "--eval-episodes", "2"],
    "rlhf_sft.py": ["--train-steps", "30", "--num-demonstrations", "200", "--num-pairs", "20"],
    "rlhf_dpo.py": ["--reference-path", "{sft}/reference.pt", "--preferences", "{sft}/preferences.jsonl",
                    "--train-steps", "30", "--batch-size", "16", "--eval-samples", "50"],
    "rlhf_ppo.py": ["--reference-path", "{sft}/reference.pt", "--reward-model-path", "{rm}/reward_model.pt",
                    "--train-steps", "3", "--rollout-size", "32", "--eval-samples", "50"],
    "rlhf_reward_model.py": ["--reference-path", "{sft}/reference.pt", "--preferences", "{sft}/preferences.jsonl",
                             "--train-steps", "30", "--batch-size", "16"],
    "sac.py": ["--env-id", "Pendulum-v1", "--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "32",
               "--hidden-sizes", "32", "32", "--eval-episodes", "2"],
    "td3.py": ["--env-id", "Pendulum-v1", "--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "32",
               "--hidden-sizes", "32", "32", "--eval-episodes", "2"],
    "trpo.py": ["--env-id", "Pendulum-v1", "--total-timesteps", "512", "--num-envs", "2", "--num-steps", "256",
                "--critic-epochs", "2", "--cg-iters", "10", "--eval-episodes", "2"],
    "value_iteration.py": ["--max-iterations", "50", "--eval-episodes", "10"],
}
DEFAULT_TINY_ARGS = ["--total-timesteps", "2000", "--eval-episodes", "2"]


# The later RLHF stages start from earlier stages' artifacts: "{sft}" in their arguments stands for the run
# directory of a tiny rlhf_sft.py run (reference.pt, preferences.jsonl), "{rm}" for a tiny
# rlhf_reward_model.py run on it (reward_model.pt); each is made once per test process.
ARTIFACT_RUNS = {"sft": ("rlhf_sft.py", ["--train-steps", "30", "--num-demonstrations", "200", "--num-pairs", "40",
                                         "--save-model"]),
                 "rm": ("rlhf_reward_model.py", ["--reference-path", "{sft}/reference.pt", "--preferences",
                                                 "{sft}/preferences.jsonl", "--train-steps", "20", "--save-model"])}
_made_artifacts = {}


def artifacts(name: str) -> Path:
    """The run directory of the artifact run `name`, made (with those it needs) on first use."""
    if name not in _made_artifacts:
        script, args = ARTIFACT_RUNS[name]
        workdir = tempfile.mkdtemp(prefix=f"lucidrl-{name}-")
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        _made_artifacts[name] = run_ok(script, with_artifacts(args), Path(workdir))
    return _made_artifacts[name]


def with_artifacts(args: list) -> list:
    """The arguments with each "{name}" replaced by that artifact run's directory."""
    filled = []
    for arg in args:
        for name in ARTIFACT_RUNS:
            if "{" + name + "}" in arg:
                arg = arg.replace("{" + name + "}", str(artifacts(name)))
        filled.append(arg)
    return filled


def sft_artifacts() -> Path:
    return artifacts("sft")


def tiny_args(script: str) -> list:
    return with_artifacts(list(TINY_ARGS.get(script, DEFAULT_TINY_ARGS)))


def run_script(script: str, args: list, cwd: Path, extra_env: dict | None = None, timeout: float = 300,
               fresh: bool = False):
    """Run algorithms/{script} as a user would, in `cwd` (its runs/ lands there).

    The run is a fork of tests/warm_python.py, which has imported torch once, instead of a new interpreter
    (≈ 3 s saved each time; the script still runs as __main__ from its own command line). A fresh
    interpreter runs it instead where the fork could differ from a user's run: `fresh=True` (the
    determinism check: there each run gets its own string-hash seed, as a user's do), an extra_env that
    sets what torch or OpenMP read when they load, and every run when LUCIDRL_TESTS_FRESH_PYTHON=1."""
    env = {**script_env(), **(extra_env or {})}
    argv = [str(ALGORITHMS / script), *args]
    if fresh or os.environ.get("LUCIDRL_TESTS_FRESH_PYTHON") == "1" or any(
            name.startswith(IMPORT_TIME_VARIABLES) for name in extra_env or {}):
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    return warm_python().run(argv, cwd, env, timeout)


def script_env() -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "MUJOCO_GL": "egl",
            "SDL_VIDEODRIVER": "dummy"}


# Read once, when a library loads: a forked warm_python already has them, so a run that sets one starts fresh.
IMPORT_TIME_VARIABLES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "TORCH", "PYTORCH_", "CUDA_", "PYTHON",
                         "LD_")


class WarmPython:
    """This test process's tests/warm_python.py: requests go to its stdin, a thread reads its replies."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "warm_python.py")], cwd=ROOT,
                                        env=script_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.replies = threading.Condition()
        self.pids, self.returncodes, self.next_id = {}, {}, 0
        threading.Thread(target=self.read_replies, daemon=True).start()
        atexit.register(self.process.stdin.close)  # end of its stdin ends it

    def read_replies(self) -> None:
        for line in self.process.stdout:
            event, request_id, number = line.split()
            with self.replies:
                (self.pids if event == b"started" else self.returncodes)[int(request_id)] = int(number)
                self.replies.notify_all()

    def wait_for(self, table: dict, request_id: int, timeout: float):
        with self.replies:
            self.replies.wait_for(lambda: request_id in table or self.process.poll() is not None, timeout)
        if request_id not in table and self.process.poll() is not None:
            raise RuntimeError(f"tests/warm_python.py exited with {self.process.returncode}")
        return table.pop(request_id, None)

    def run(self, argv: list, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """As subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout) would."""
        command = [sys.executable, *argv]
        with tempfile.TemporaryDirectory(prefix="lucidrl-run-") as streams:
            stdout, stderr = os.path.join(streams, "stdout"), os.path.join(streams, "stderr")
            with self.replies:
                request_id, self.next_id = self.next_id, self.next_id + 1
            request = {"id": request_id, "argv": argv, "cwd": str(cwd), "env": env, "stdout": stdout,
                       "stderr": stderr}
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            pid = self.wait_for(self.pids, request_id, 60)
            if pid is None:
                raise RuntimeError(f"tests/warm_python.py did not start {argv[0]} within 60 s")
            returncode = self.wait_for(self.returncodes, request_id, timeout)
            if returncode is None:  # as subprocess.run does: kill it, then raise
                os.kill(pid, signal.SIGKILL)
                self.wait_for(self.returncodes, request_id, 60)
            output, errors = (Path(path).read_text(errors="replace") for path in (stdout, stderr))
        if returncode is None:
            raise subprocess.TimeoutExpired(command, timeout, output, errors)
        return subprocess.CompletedProcess(command, returncode, output, errors)


_warm_python = []


def warm_python() -> WarmPython:
    """Started on the first run that uses it, one per test process."""
    if not _warm_python or _warm_python[0].process.poll() is not None:
        _warm_python[:] = [WarmPython()]
    return _warm_python[0]


def sigint_as_in_a_terminal() -> None:
    """preexec_fn for a subprocess that must meet Ctrl-C as a user's does: pytest-xdist's workers ignore
    SIGINT, a child inherits that, and a Python started with SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_ok(script: str, args: list, cwd: Path, **kwargs) -> Path:
    """Run, insist on success, and return the run directory it created (the newest one)."""
    result = run_script(script, args, cwd, **kwargs)
    assert result.returncode == 0, f"{script} {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    run_dirs = sorted((cwd / "runs").iterdir(), key=lambda path: path.stat().st_mtime)
    return run_dirs[-1]


def run_in_process(script: str, args: list, capsys) -> tuple:
    """Parse args with the script's own tyro CLI and train in this process: (exit status, stderr).
    For checks that end before any training; it saves a Python start and a torch import per case."""
    module = load_module(script)
    try:
        module.train(tyro.cli(module.Args, args=args))
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def load_module(script: str):
    """Import a script as a module (importing must have no side effects). sys.modules[name] is the last
    copy loaded, by any test file: a test whose run pickles the script's own classes (a checkpoint holds
    the env with its wrappers) calls this again, so that pickle finds the class of the copy it runs."""
    spec = importlib.util.spec_from_file_location(script[:-3], ALGORITHMS / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # tyro reads the Args docstrings through inspect, which looks here
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in-process training inside a temporary working directory (runs/ lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TimedEnv(gym.Env):
    """Observation [t, 1]; the episode terminates at t == terminate_at (if set), otherwise the
    registered time limit truncates it. The final observation differs from every reset observation,
    so a test can tell whether a script bootstrapped from the true final obs or the reset obs."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None, terminate_at=None):
        self.render_mode, self.terminate_at, self.t = render_mode, terminate_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, 1.0], np.float32), 1.0, self.t == self.terminate_at, False, {}


class NarrowActionEnv(gym.Env):
    """Actions bounded to +-0.1, so nearly every sample of a std-1 Gaussian must be clipped for the env;
    records the actions it receives (ppo_continuous.py and trpo.py store the unclipped sample)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
    received = []

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.normal(size=2).astype(np.float32), {}

    def step(self, action):
        NarrowActionEnv.received.append(np.array(action))
        return self.np_random.normal(size=2).astype(np.float32), 1.0, False, False, {}


class EndlessRewardEnv(gym.Env):
    """One state, one action, reward 1 per step; it terminates at step `terminate_at` if given, else
    only the time limit ends it. Never terminating, its value is 1 / (1 - gamma): treating the time
    limit as a termination pulls a learned value far below that (below even the 5-step return
    (1 - gamma^5) / (1 - gamma) = 4.10 at gamma 0.9 and limit 5)."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(1)

    def __init__(self, render_mode=None, terminate_at=None):
        self.render_mode, self.terminate_at, self.t = render_mode, terminate_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return 0, 1.0, self.t == self.terminate_at, False, {}


def register_endless_reward_env(max_episode_steps: int = 5) -> str:
    """Register EndlessRewardEnv (once) with a time limit; returns its id."""
    env_id = f"LucidRL/EndlessReward{max_episode_steps}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=EndlessRewardEnv, max_episode_steps=max_episode_steps)
    return env_id


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist with --dist loadgroup (the README's command), a script's parametrized checks run on
    one worker, so the runs they share (the harness's module-scoped tiny and flipped runs, the RLHF
    artifacts) are made once rather than once per worker."""
    for item in items:
        script = getattr(item, "callspec", None) and item.callspec.params.get("script")
        if script:
            item.add_marker(pytest.mark.xdist_group(script))
