"""benchmarks/dqn_variants_eval.py: each (variant, seed) trains, saves its model and is evaluated on starts of its
own; the table reads those files back; a finished run is not rerun."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("dqn_variants_eval", ROOT / "benchmarks" / "dqn_variants_eval.py")
dqn_variants_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dqn_variants_eval)


def test_a_tiny_comparison_trains_evaluates_and_tabulates(tmp_path, capsys):
    args = dqn_variants_eval.Args(env_id="CartPole-v1", total_timesteps=600, seeds=[2], eval_episodes=3,
                                  variants=["plain", "prioritized + n-step 3"], work_dir=str(tmp_path),
                                  dqn_args="--learning-starts 200 --batch-size 32")
    dqn_variants_eval.main(args)
    evaluation = json.loads(next(tmp_path.glob("runs/*__eval-prioritized-n-step-3-s2__*/summary.json")).read_text())
    assert evaluation["args"]["seed"] == 2000 and len(evaluation["eval_returns"]) == 3  # starts no training seed's eval uses
    assert evaluation["args"]["model_path"].endswith("prioritized-n-step-3-s2.pt")
    training = json.loads(next(tmp_path.glob("runs/*__prioritized-n-step-3-s2__*/summary.json")).read_text())["args"]
    assert training["prioritized"] and training["n_step"] == 3 and training["learning_starts"] == 200
    output = capsys.readouterr().out
    row = next(line for line in output.splitlines() if line.startswith("| prioritized + n-step 3 |"))
    assert f"| {evaluation['eval_return_mean']:.1f} |" in row and "| 0 of 1 |" in row  # CartPole returns are > -100
    # run again: nothing retrains (the runs' directories stay the same ones)
    before = sorted(path.name for path in (tmp_path / "runs").iterdir())
    dqn_variants_eval.main(args)
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == before
