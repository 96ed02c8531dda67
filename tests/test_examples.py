"""examples/trading.py, the worked example of bringing your own env: it is a valid Gymnasium env, its
kwargs do what they say, the figures in its docstring hold, and the README's command learns on it."""

import shutil
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from conftest import ROOT, read_summary, run_ok

from examples.trading import TradingEnv  # the repository root is on sys.path (pytest.ini)


def mean_return(env: gym.Env, policy, episodes: int) -> float:
    rng = np.random.default_rng(0)
    returns = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        episode_return, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, rng))
            episode_return += reward
            done = terminated or truncated
        returns.append(episode_return)
    return float(np.mean(returns))


@pytest.mark.parametrize("continuous", [False, True])
def test_trading_passes_gymnasiums_env_checker(continuous):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice about infinite Box bounds
        check_env(TradingEnv(continuous=continuous))


def test_kwargs_reach_the_env_through_its_module_id():
    env = gym.make("examples.trading:Trading-v0", episode_length=10, continuous=True, window=6)
    assert env.observation_space.shape == (7,) and isinstance(env.action_space, gym.spaces.Box)
    env.reset(seed=0)
    steps = [env.step(np.array([0.5], np.float32)) for _ in range(10)]
    assert [truncated for *_, truncated, _ in steps] == [False] * 9 + [True]
    assert not any(terminated for _, _, terminated, _, _ in steps), "the market never terminates"
    with pytest.raises(ValueError, match="phi"):
        TradingEnv(phi=1.0)


def test_the_docstrings_baselines_hold():
    """Random positions lose the costs (-22), holding long earns nothing on average, and momentum
    ("long after a rise, short after a fall") earns +43: over 1,000 episodes (standard errors ≈ 0.5)."""
    env = gym.make("examples.trading:Trading-v0")
    assert mean_return(env, lambda obs, rng: rng.integers(3), 1000) == pytest.approx(-22.1, abs=1.5)
    assert mean_return(env, lambda obs, rng: 2, 1000) == pytest.approx(-0.4, abs=1.5)
    assert mean_return(env, lambda obs, rng: 2 if obs[-2] > 0 else 0, 1000) == pytest.approx(43.2, abs=1.5)


@pytest.mark.learning
def test_the_readmes_command_learns_to_trade(tmp_path):
    """README's `python algorithms/ppo.py --env-id examples.trading:Trading-v0`, run where the examples
    package lies, learns to trade on momentum: its deterministic evaluation beats holding by far."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    run_dir = run_ok("ppo.py", ["--env-id", "examples.trading:Trading-v0", "--total-timesteps", "100000"], tmp_path)
    assert read_summary(run_dir)["eval_return_mean"] > 25.0
