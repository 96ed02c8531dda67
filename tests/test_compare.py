"""benchmarks/compare.py: the arithmetic of the side-by-side table (the peers themselves are not installed in CI;
one real LucidRL side runs through the tool to check what it reads from a run directory)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def test_learning_rate_counts_only_episodes_after_the_warm_up():
    # (step, seconds): two episodes end in the warm-up at 1,000 steps/s, then 100 steps/s
    episodes = [(500, 0.5), (1000, 1.0), (1200, 3.0), (1400, 5.0), (2000, 11.0)]
    assert compare.learning_rate(episodes, learning_starts=1000) == pytest.approx(800 / 8.0)
    assert compare.learning_rate(episodes, learning_starts=0) == pytest.approx(1500 / 10.5)
    assert compare.learning_rate(episodes[:3], learning_starts=1000) is None  # one episode: no interval


def test_peer_lines_are_parsed_as_cleanrl_prints_them():
    # CleanRL on gymnasium 0.29 prints the return as a one-element array; SB3's peer prints a float
    for line, step, value in [("global_step=1234, episodic_return=[-153.2]", 1234, -153.2),
                              ("global_step=99, episodic_return=[ 22.]", 99, 22.0),
                              ("global_step=5000, episodic_return=-1.5e+02", 5000, -150.0)]:
        match = compare.EPISODE_LINE.search(line)
        assert int(match.group(1)) == step and float(match.group(2)) == value
    assert compare.SPS_LINE.match("SPS: 4146").group(1) == "4146"
    assert compare.SPS_LINE.match("global_step=1, SPS: 3") is None


def test_median_and_ratio():
    assert compare.median([3.0, 1.0, 2.0]) == "2"
    assert compare.median([4.0, 1.0]) == "2.5"
    assert compare.median([1.0, None]) == ""  # a missing figure in any run leaves the cell empty
    assert compare.ratio("300", "100") == "**3.00×**"
    assert compare.ratio("", "100") == "—" and compare.ratio("1", "0") == "—"


ROW = {"runs": "1", "learning_sps": "200", "whole_sps": "300", "wall_time": "10", "peak_mb": "300",
       "return_last10": "-150", "machine": "test CPU, 2 cores", "date": "2026-11-28"}


def test_the_table_shows_a_pair_only_when_both_sides_ran():
    rows = {("sac-pendulum-cleanrl", "lucidrl"): ROW, ("sac-pendulum-cleanrl", "peer"): dict(ROW, learning_sps="100"),
            ("td3-pendulum-cleanrl", "lucidrl"): ROW}
    table = compare.render_table(rows)
    assert "| sac.py Pendulum-v1 | 15,000 | 1 / 1 | CleanRL sac_continuous_action.py | 100 → 200 | **2.00×** |" in table
    assert "td3.py" not in table
    assert "test CPU, 2 cores, 2026-11-28 |" in table


def test_a_row_of_several_seeds_names_them():
    assert compare.seeds_text([1]) == "1" and compare.seeds_text([3, 1, 2]) == "1–3"
    assert compare.seeds_text([1, 2]) == "1, 2" and compare.seeds_text([5, 1, 2]) == "1, 2, 5"
    rows = {("sac-pendulum-cleanrl", "lucidrl"): dict(ROW, runs="3", seeds="1–3"),
            ("sac-pendulum-cleanrl", "peer"): dict(ROW, runs="3", seeds="1–3", learning_sps="100")}
    assert "| sac.py Pendulum-v1 | 15,000 | 3 / 3, seeds 1–3 | CleanRL" in compare.render_table(rows)
    # a row written before the seeds column existed (or with seed 1 alone) names none
    for seeds in ({}, {"seeds": ""}, {"seeds": "1"}):
        rows = {("sac-pendulum-cleanrl", side): dict(ROW, **seeds) for side in ("lucidrl", "peer")}
        assert "| 15,000 | 1 / 1 | CleanRL" in compare.render_table(rows)


def test_a_ratio_needs_both_sides_on_one_machine_on_one_day():
    for other in ({"machine": "another CPU, 2 cores"}, {"date": "2026-11-29"}):
        rows = {("sac-pendulum-cleanrl", "lucidrl"): ROW, ("sac-pendulum-cleanrl", "peer"): dict(ROW, **other)}
        table = compare.render_table(rows)
        assert "| 200 → 200 | — (not side by side) |" in table and "×" not in table


def test_every_pair_names_a_script_and_a_peer_that_exist():
    names = [pair.name for pair in compare.PAIRS]
    assert len(names) == len(set(names))
    algorithms = {"ppo", "ppo_continuous", "a2c", "dqn", "sac", "td3", "ddpg", "trpo"}  # sb3_peer.py's choices
    for pair in compare.PAIRS:
        assert (ROOT / "algorithms" / pair.script).exists()
        assert pair.peer_target.endswith(".py") if pair.peer == "cleanrl" else pair.peer_target in algorithms
        assert 0 <= pair.learning_starts < pair.total_timesteps


def test_the_lucidrl_side_reads_a_real_run(monkeypatch):
    pair = compare.Pair("tiny", "dqn.py", "cleanrl", "dqn.py", "CartPole-v1", "CartPole-v1", 3000, 1000,
                        ("--eval-episodes", "1", "--batch-size", "32", "--learning-starts", "1000"))
    result = compare.run_lucidrl(pair, seed=1)
    assert result["whole_sps"] > 0 and result["wall_time"] > 0 and result["peak_mb"] > 10
    assert len(result["returns"]) > 10 and result["learning_sps"] > 0


def test_a_failing_run_raises_with_its_last_lines(tmp_path):
    with pytest.raises(RuntimeError, match="exited 3:\nboom"):
        compare.run_process(["sh", "-c", "echo boom; exit 3"], str(tmp_path), {})
