"""Checks every script in algorithms/ must pass (../shared/CONVENTIONS.md). A new script is covered
by existing here; at most it adds one TINY_ARGS entry in conftest.py."""

import ast
import dataclasses
import subprocess
import sys

import pytest

from conftest import ALGORITHMS, SCRIPTS, load_module, read_summary, run_in_process, run_ok, run_script, tiny_args

SUMMARY_KEYS = {"args", "global_step", "eval_returns", "eval_return_mean", "eval_return_std", "sps", "wall_time",
                "versions"}
# One env of each kind of space pair: Discrete/Discrete, Box/Discrete, Box/Box.
PROBE_ENVS = ["FrozenLake-v1", "CartPole-v1", "Pendulum-v1"]


def args_fields(script: str) -> list:
    return dataclasses.fields(load_module(script).Args)


def cli_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def read_episodes(run_dir) -> list:
    """episodes.csv rows without the wall_time column (the only one allowed to differ between runs)."""
    lines = (run_dir / "episodes.csv").read_text().splitlines()
    assert lines[0] == "global_step,episode_return,episode_length,wall_time"
    return [line.rsplit(",", 1)[0] for line in lines]


def test_scripts_are_discovered():
    assert {"q_learning.py", "reinforce.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_file_shape_and_args_docstrings(script):
    """Module docstring, Args with a docstring under every field, train(), __main__ guard, no
    import of another file here, and every Args field read by the code (no leftover knobs)."""
    source = (ALGORITHMS / script).read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree), "module docstring missing"
    args_class = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Args")
    body = args_class.body
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            following = body[index + 1] if index + 1 < len(body) else None
            assert isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant), \
                f"Args.{node.target.id} has no docstring"
    assert any(isinstance(node, ast.FunctionDef) and node.name == "train" for node in tree.body)
    assert 'if __name__ == "__main__":' in source
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("algorithms")
    for field in args_fields(script):
        assert f"args.{field.name}" in source or f'"{field.name}"' in source, f"Args.{field.name} is never read"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_field(script, tmp_path):
    result = run_script(script, ["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    for field in args_fields(script):
        assert cli_flag(field.name) in result.stdout, f"--help does not show {cli_flag(field.name)}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_import_has_no_side_effects(script, tmp_path):
    code = f"import importlib.util as u; s = u.spec_from_file_location('m', {str(ALGORITHMS / script)!r}); " \
           "m = u.module_from_spec(s); s.loader.exec_module(m); print('ok')"
    result = subprocess.run([sys.executable, "-c", code, "--total-timesteps", "-5"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert list(tmp_path.iterdir()) == [], "importing the script wrote files"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_writes_the_run_directory(script, tmp_path):
    run_dir = run_ok(script, tiny_args(script), tmp_path)
    assert run_dir.name.split("__")[1] == script[:-3]
    summary = read_summary(run_dir)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["global_step"] > 0 and len(summary["eval_returns"]) == summary["args"]["eval_episodes"]
    assert len(read_episodes(run_dir)) > 1, "no training episode finished"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_with_every_boolean_flag_flipped(script, tmp_path):
    flipped = []
    for field in args_fields(script):
        if field.type in (bool, "bool"):
            flipped.append(("--no-" if field.default else "--") + field.name.replace("_", "-"))
    assert flipped, "no boolean flags found"
    run_dir = run_ok(script, tiny_args(script) + flipped, tmp_path)
    assert (run_dir / "summary.json").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_wrong_space_exits_2_with_one_line(script, in_tmp, capsys):
    """Every probe env either runs (rc 0) or is refused before any work with one line naming the
    env, what the script needs, and which script to try instead."""
    refused = 0
    for env_id in PROBE_ENVS:
        status, stderr = run_in_process(script, ["--env-id", env_id, "--total-timesteps", "0", "--eval-episodes", "1"],
                                        capsys)
        if status == 2:
            refused += 1
            lines = stderr.strip().splitlines()
            assert len(lines) == 1, stderr
            assert env_id in lines[0] and "needs" in lines[0] and "Try" in lines[0], lines[0]
        else:
            assert status == 0, stderr[-2000:]
    assert 0 < refused < len(PROBE_ENVS)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("bad_args, named", [
    (["--env-id", "CartPol-v1"], "Did you mean"),
    (["--total-timesteps", "-5"], "--total-timesteps"),
    (["--eval-episodes", "0"], "--eval-episodes"),
    (["--model-path", "no/such/model"], "--model-path"),
])
def test_bad_input_exits_2_without_traceback(script, bad_args, named, in_tmp, capsys):
    status, stderr = run_in_process(script, bad_args, capsys)
    assert status == 2 and named in stderr, stderr
    assert not (in_tmp / "runs").exists(), "bad input must be refused before any work"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_file_that_is_not_a_model_exits_2(script, in_tmp, capsys):
    (in_tmp / "notes.txt").write_text("not a model")
    status, stderr = run_in_process(script, ["--model-path", "notes.txt", "--total-timesteps", "0"], capsys)
    assert status == 2 and "--model-path" in stderr, stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_tyro_rejects_malformed_values(script, tmp_path):
    result = run_script(script, ["--total-timesteps", "many"], tmp_path)
    assert result.returncode == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_episodes_other_seed_different(script, tmp_path):
    episodes = {}
    for name, seed in (("first", "1"), ("second", "1"), ("other_seed", "2")):
        (tmp_path / name).mkdir()
        episodes[name] = read_episodes(run_ok(script, tiny_args(script) + ["--seed", seed], tmp_path / name))
    assert episodes["first"] == episodes["second"]
    assert episodes["other_seed"] != episodes["first"], "the seed changes nothing: is it used?"


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_offline_creates_a_wandb_run_with_the_figures(script, tmp_path):
    run_dir = run_ok(script, tiny_args(script) + ["--track"], tmp_path)
    records = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(records) == 1, "no offline W&B run in the run directory"
    content = records[0].read_bytes()
    for key in (b"charts/episodic_return", b"charts/SPS", b"eval/return_mean", run_dir.name.encode()):
        assert key in content, f"{key!r} was not logged to W&B"


@pytest.mark.parametrize("script", SCRIPTS)
def test_save_then_load_evaluates_to_the_same_returns(script, tmp_path):
    run_dir = run_ok(script, tiny_args(script) + ["--save-model"], tmp_path)
    models = [path for path in run_dir.iterdir() if path.suffix in (".pt", ".npy")]
    assert len(models) == 1, "--save-model wrote no model"
    trained = read_summary(run_dir)
    reload_dir = tmp_path / "reload"
    reload_dir.mkdir()
    # the training flags again (the env and network shape), without the budget: evaluate only
    training_flags = tiny_args(script)
    for flag in ("--total-timesteps", "--eval-episodes"):
        if flag in training_flags:
            del training_flags[training_flags.index(flag):training_flags.index(flag) + 2]
    evaluated_dir = run_ok(script, training_flags + ["--model-path", str(models[0]), "--total-timesteps", "0",
                                                     "--capture-video", "--eval-episodes",
                                                     str(trained["args"]["eval_episodes"])], reload_dir)
    evaluated = read_summary(evaluated_dir)
    assert evaluated["global_step"] == 0
    assert evaluated["eval_returns"] == trained["eval_returns"]
    assert list((evaluated_dir / "videos").glob("*.mp4")), "--capture-video recorded nothing"
