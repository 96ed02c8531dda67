"""benchmarks/td3_paper_curves.py: the TD3 paper's published curves are read exactly, and td3.py's runs (finished
rows and runs still going) are set beside them at the right steps."""

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("td3_paper_curves", ROOT / "benchmarks" / "td3_paper_curves.py")
td3_paper_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(td3_paper_curves)


def fake_learning_curves(folder: Path, evaluations: int = 101) -> dict:
    """sfujim/TD3's layout: learning_curves/{Hopper,HalfCheetah,Walker}/TD3_{env}-v1_{seed}.npy."""
    arrays = {}
    for offset, ((name, paper_env), _) in enumerate(td3_paper_curves.ENVS.items()):
        (folder / name).mkdir(parents=True)
        for seed in range(2):
            values = np.arange(evaluations, dtype=np.float64) * (10 + seed) + 1000 * offset
            np.save(folder / name / f"TD3_{paper_env}_{seed}.npy", values)
            arrays[(paper_env, seed)] = values
    return arrays


def write(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_import_reads_every_evaluation_at_its_step(tmp_path):
    arrays = fake_learning_curves(tmp_path / "learning_curves")
    rows = td3_paper_curves.import_curves(tmp_path / "learning_curves")
    assert len(rows) == 3 * 2 * 101
    walker_seed1 = [row for row in rows if row["paper_env"] == "Walker2d-v1" and row["seed"] == 1]
    assert [row["step"] for row in walker_seed1] == [5_000 * i for i in range(101)]
    assert [row["return"] for row in walker_seed1] == arrays[("Walker2d-v1", 1)].tolist()
    assert {row["env_id"] for row in walker_seed1} == {"Walker2d-v5"}
    steps, returns = td3_paper_curves.paper_curves(rows)["Walker2d-v5"]
    assert steps[-1] == 500_000 and returns.shape == (2, 101)
    np.testing.assert_array_equal(returns[1], arrays[("Walker2d-v1", 1)])


def test_import_refuses_a_folder_without_an_environment(tmp_path):
    fake_learning_curves(tmp_path / "learning_curves")
    for path in (tmp_path / "learning_curves" / "Walker").iterdir():
        path.unlink()
    with pytest.raises(SystemExit, match="Walker2d-v1"):
        td3_paper_curves.import_curves(tmp_path / "learning_curves")


def test_plot_sets_finished_and_running_td3_runs_beside_the_paper(tmp_path, capsys):
    fake_learning_curves(tmp_path / "learning_curves")
    paper_csv = tmp_path / "paper.csv"
    assert td3_paper_curves.main(td3_paper_curves.Import(str(tmp_path / "learning_curves"), str(paper_csv))) == 0
    results = tmp_path / "results"
    # a finished 100k row of td3.py on Hopper (seed 1: a straight line to 500) and a sac.py row that is not drawn
    write(results / "full_curves.csv",
          [{"job": "td3__Hopper-v5__100k-of-1M", "seed": 1, "step": step, "return": step / 200}
           for step in (0, 50_000, 100_000)]
          + [{"job": "sac__Hopper-v5__100k-of-1M", "seed": 1, "step": 100_000, "return": 9999}])
    write(results / "full.csv", [{"script": "td3.py", "env_id": "Hopper-v5", "variant": "100k of 1M", "seed": 1,
                                  "global_step": 100_000, "eval_return_mean": 512.5}])
    # a 1M run still going, 300 episodes of 1,000 steps each so far, every return 777
    episodes = tmp_path / "logs" / "full" / "td3__HalfCheetah-v5__1M-steps" / "seed2" / "runs" / "x" / "episodes.csv"
    write(episodes, [{"global_step": 1000 * (i + 1), "episode_return": 777.0, "episode_length": 1000,
                      "wall_time": i} for i in range(300)])
    # a finished run's directory in the logs is left to full_curves.csv
    finished = episodes.parents[4] / "td3__Hopper-v5__100k-of-1M" / "seed1" / "runs" / "y" / "episodes.csv"
    write(finished, [{"global_step": 1000 * (i + 1), "episode_return": -5.0, "episode_length": 1000, "wall_time": i}
                     for i in range(90)])
    (finished.parent / "summary.json").write_text("{}")
    out = tmp_path / "figure.png"
    fragment = tmp_path / "fragment.md"
    td3_paper_curves.main(td3_paper_curves.Plot(str(paper_csv), str(results), str(tmp_path / "logs"), str(out),
                                                str(fragment)))
    assert out.stat().st_size > 10_000
    assert f"]({out})" in fragment.read_text() and "(2 runs so far)" in fragment.read_text()
    lines = capsys.readouterr().out.splitlines()
    hopper_100k = next(line for line in lines if line.startswith("| Hopper-v5 | 100,000 |"))
    # the paper's Hopper (offset 0): evaluation 20 is 20 * 10 and 20 * 11, so mean 210 [200, 220]
    assert "| 210 [200, 220] |" in hopper_100k and "100k-of-1M s1: 500" in hopper_100k and "9,999" not in hopper_100k
    assert "| Hopper-v5 | 100k of 1M | 1 | 100,000 | 512 | 210 [200, 220] |" in lines  # the final evaluation
    cheetah_200k = next(line for line in lines if line.startswith("| HalfCheetah-v5 | 200,000 |"))
    assert "1M-steps s2: 777" in cheetah_200k
    # past where the running run has come (300k) it has no value; past the paper's curves (500k here) no row
    assert next(line for line in lines if line.startswith("| HalfCheetah-v5 | 500,000 |")).endswith("| — |")
    assert not any(line.startswith("| HalfCheetah-v5 | 1,000,000 |") for line in lines)
