"""Checks every script in algorithms/ must pass (../shared/CONVENTIONS.md). A new script is covered
by existing here; at most it adds one TINY_ARGS entry in conftest.py."""

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import gymnasium as gym
import pytest
import torch
import tyro

from conftest import ALGORITHMS, SCRIPTS, load_module, read_summary, run_in_process, run_ok, run_script, tiny_args
from custom_envs import ACTION_KINDS

SUMMARY_KEYS = {"args", "global_step", "eval_returns", "eval_return_mean", "eval_return_std", "sps", "wall_time",
                "versions"}
# Scripts without episodes or evaluation (bandits.py) still write these.
BASE_SUMMARY_KEYS = {"args", "wall_time", "versions"}
# Which environments a script takes: Gymnasium's (the default) or, where it declares ENV_API = "pettingzoo",
# PettingZoo's parallel multi-agent envs. Each check below picks its envs by the script's API.
# Probes, one of each kind of space pair: Discrete/Discrete, Box/Discrete, Box/Box (env id, env kwargs).
PROBE_ENVS = {"gymnasium": [("FrozenLake-v1", {}), ("CartPole-v1", {}), ("Pendulum-v1", {})],
              "pettingzoo": [("simple_spread_v3", {}), ("simple_spread_v3", {"continuous_actions": True})]}
MISSPELT_ENV_IDS = {"gymnasium": "CartPol-v1", "pettingzoo": "simple_sprad_v3"}
# The field that sets how much a script trains; 0 means "only evaluate (a loaded model)".
# Dynamic programming takes no environment steps to learn, so its budget is sweeps or iterations.
BUDGET_FIELDS = ("total_timesteps", "max_iterations", "train_steps")
# A user's env in a package of their own (tests/custom_envs.py, copied into the run's working directory):
# gym.make imports the module, which registers the env.
CUSTOM_ENV_IDS = {"gymnasium": "custom_envs:Countdown-v0", "pettingzoo": "custom_envs:MultiCountdown"}
CUSTOM_ENV_MODULE = ALGORITHMS.parent / "tests" / "custom_envs.py"


def env_api(script: str) -> str:
    return getattr(load_module(script), "ENV_API", "gymnasium")


def args_fields(script: str) -> list:
    return dataclasses.fields(load_module(script).Args)


def has_field(script: str, name: str) -> bool:
    return any(field.name == name for field in args_fields(script))


def require(script: str, *names: str) -> None:
    """The shared checks apply where a script has the Args field they exercise (CONVENTIONS.md §2:
    "the same names where they apply"); elsewhere the check is skipped, saying why."""
    missing = [name for name in names if not has_field(script, name)]
    if missing:
        pytest.skip(f"{script} has no {', '.join(cli_flag(name) for name in missing)}")


def budget_flag(script: str):
    return next((cli_flag(name) for name in BUDGET_FIELDS if has_field(script, name)), None)


def cli_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flipped_flags(script: str) -> list:
    """Every boolean flag of the script, set the other way from its default."""
    return [("--no-" if field.default else "--") + field.name.replace("_", "-")
            for field in args_fields(script) if field.type in (bool, "bool")]


def without(flags: list, *names: str) -> list:
    """The flags with each named flag and its value removed."""
    flags = list(flags)
    for name in names:
        if name in flags:
            del flags[flags.index(name):flags.index(name) + 2]
    return flags


def reproducible(script: str) -> bool:
    return getattr(load_module(script), "DETERMINISTIC", True)


def reproducible_args(script: str) -> list:
    """The tiny arguments, with those under which a script that races by design (DETERMINISTIC = False)
    gives the same run for the same seed (its REPRODUCIBLE_ARGS, e.g. a3c.py's one worker)."""
    return tiny_args(script) + ([] if reproducible(script) else load_module(script).REPRODUCIBLE_ARGS)


def evaluate_only(script: str) -> list:
    return [budget_flag(script), "0"] + (["--eval-episodes", "1"] if has_field(script, "eval_episodes") else [])


def countdown_spaces(script: str, capsys) -> dict:
    """The first Countdown spaces (observation, actions) the script accepts, found by evaluating an
    untrained agent in-process; scripts that can flatten observations get the Dict form."""
    for obs, actions in [("box", kind) for kind in ACTION_KINDS] + [("discrete", "discrete")]:
        status, _ = run_in_process(script, ["--env-id", CUSTOM_ENV_IDS[env_api(script)], "--env-kwargs",
                                            json.dumps({"obs": obs, "actions": actions}), *evaluate_only(script)], capsys)
        if status == 0:
            return {"obs": "dict" if has_field(script, "flatten_obs") else obs, "actions": actions}
    raise AssertionError(f"{script} accepts no Countdown spaces")


def read_log(run_dir) -> list:
    """The rows of the run's one CSV log (episodes.csv, or iterations/curves for scripts without
    episodes) without the wall_time column, the only one allowed to differ between runs."""
    logs = list(run_dir.glob("*.csv"))
    assert len(logs) == 1, f"expected one CSV log in the run directory, found {[path.name for path in logs]}"
    rows = [line.split(",") for line in logs[0].read_text().splitlines()]
    if logs[0].name == "episodes.csv":
        assert rows[0] == ["global_step", "episode_return", "episode_length", "wall_time"]
    keep = [index for index, name in enumerate(rows[0]) if name != "wall_time"]
    return [[row[index] for index in keep] for row in rows]


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """Runs several checks read, made once per script: "tiny" (the tiny arguments, seed 1) and
    "flipped" (also every boolean flag flipped: --track, --save-model, --capture-video, ...)."""
    made = {}

    def get(script: str, kind: str):
        if (script, kind) not in made:
            cwd = tmp_path_factory.mktemp(f"{script[:-3]}-{kind}")
            extra = flipped_flags(script) if kind == "flipped" else []
            made[script, kind] = run_ok(script, tiny_args(script) + extra + ["--seed", "1"], cwd)
        return made[script, kind]

    return get


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
def test_help_lists_every_field(script, capsys):
    """--help through the script's own tyro CLI (in-process: the same parser a user meets)."""
    with pytest.raises(SystemExit) as exit_info:
        tyro.cli(load_module(script).Args, args=["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for field in args_fields(script):
        assert cli_flag(field.name) in shown, f"--help does not show {cli_flag(field.name)}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_import_has_no_side_effects(script, tmp_path, monkeypatch):
    """Importing with a command line that training would refuse neither parses it, nor writes files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--total-timesteps", "-5"])
    load_module(script)
    assert list(tmp_path.iterdir()) == [], "importing the script wrote files"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_writes_the_run_directory(script, shared_run):
    run_dir = shared_run(script, "tiny")
    assert run_dir.name.split("__")[1] == script[:-3]
    summary = read_summary(run_dir)
    if has_field(script, "eval_episodes"):
        assert SUMMARY_KEYS <= set(summary)
        assert len(summary["eval_returns"]) == summary["args"]["eval_episodes"]
    else:
        assert BASE_SUMMARY_KEYS <= set(summary)
    if has_field(script, "total_timesteps"):
        assert summary["global_step"] > 0
    assert len(read_log(run_dir)) > 1, "the log has no row: no training episode (or iteration) finished"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_with_every_boolean_flag_flipped(script, shared_run):
    assert flipped_flags(script), "no boolean flags found"
    assert (shared_run(script, "flipped") / "summary.json").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_wrong_space_exits_2_with_one_line(script, in_tmp, capsys):
    """Every probe env either runs (rc 0) or is refused before any work with one line naming the
    env, what the script needs, and which script to try instead."""
    require(script, "env_id")
    refused = 0
    probes = PROBE_ENVS[env_api(script)]
    for env_id, env_kwargs in probes:
        status, stderr = run_in_process(script, ["--env-id", env_id, "--env-kwargs", json.dumps(env_kwargs),
                                                 *evaluate_only(script)], capsys)
        if status == 2:
            refused += 1
            lines = stderr.strip().splitlines()
            assert len(lines) == 1, stderr
            assert env_id in lines[0] and "needs" in lines[0] and "Try" in lines[0], lines[0]
        else:
            assert status == 0, stderr[-2000:]
    assert 0 < refused < len(probes)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("field, value, named", [
    ("env_id", "misspelt", "Did you mean"),
    ("env_id", "no_such_module:Env-v0", "No module named 'no_such_module'"),
    ("env_kwargs", "[1]", "--env-kwargs must be a JSON object"),
    ("env_kwargs", '{"no_such_kwarg": 1}', "no_such_kwarg"),
    ("budget", "-5", "budget"),
    ("eval_episodes", "0", "--eval-episodes"),
    ("model_path", "no/such/model", "--model-path"),
    ("max_episode_steps", "0", "--max-episode-steps"),  # was read as "left out" (the registered limit)
    ("exploration_fraction", "-0.5", "--exploration-fraction"),  # epsilon sat at its end value from step 1
    ("exploration_fraction", "inf", "--exploration-fraction"),  # an OverflowError traceback
    # a negative coefficient turns its term around; a target KL of 0 stops every epoch after one minibatch
    ("clip_coef", "-0.2", "--clip-coef"),
    ("vf_coef", "-0.5", "--vf-coef"),
    ("ent_coef", "-0.01", "--ent-coef"),
    ("target_kl", "0", "--target-kl"),
    ("seed", "-1", "--seed"),  # numpy's seeding raised a ValueError traceback
    ("seed", str(2**32), "--seed"),  # above np.random.seed's top: the same
])
def test_bad_input_exits_2_without_traceback(script, field, value, named, in_tmp, capsys):
    if field == "budget":
        flag = named = budget_flag(script)
        if flag is None:
            pytest.skip(f"{script} has no budget field ({', '.join(BUDGET_FIELDS)})")
    else:
        require(script, field)
        flag = cli_flag(field)
        value = MISSPELT_ENV_IDS[env_api(script)] if value == "misspelt" else value
    status, stderr = run_in_process(script, [flag, value], capsys)
    assert status == 2 and named in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (in_tmp / "runs").exists(), "bad input must be refused before any work"


def assert_refused(script: str, name: str, value: str, in_tmp, capsys) -> None:
    """--name value is refused in one line naming the flag (exit 2) before any work. The run takes the tiny
    arguments: a script that took the value would end soon (and fail here) instead of training long."""
    status, stderr = run_in_process(script, tiny_args(script) + [cli_flag(name), value], capsys)
    assert status == 2 and cli_flag(name) in stderr, (name, stderr[-2000:])
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (in_tmp / "runs").exists(), "bad input must be refused before any work"


# Step sizes and gradient-clip norms. A negative step size climbs the loss, a negative clip norm flips the
# gradient (clip_grad_norm_ scales it by max_norm / norm), and 0 trains nothing while the run looks normal.
STEP_FIELDS = ("learning_rate", "baseline_learning_rate", "policy_lr", "q_lr", "reward_model_lr", "max_grad_norm")
# A step size of 0 is a use of its own in prediction: the error of the initial values, the curve every other
# step size is read against. td_lambda.py only predicts (n_step_sarsa.py takes 0 with --prediction only).
ZERO_STEP_ALLOWED = {("td_lambda.py", "learning_rate")}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("value", ["-0.1", "0", "inf"])
def test_a_step_size_or_clip_norm_out_of_range_is_refused(script, value, in_tmp, capsys):
    """Step sizes must be > 0 and finite (an infinite one was a traceback or nan weights), clip norms > 0 (a
    clip norm of inf is no clipping, a setting of its own)."""
    fields = [name for name in STEP_FIELDS if has_field(script, name)
              and not (value == "0" and (script, name) in ZERO_STEP_ALLOWED)
              and not (value == "inf" and name == "max_grad_norm")]
    if not fields:
        pytest.skip(f"{script} has no step size or clip norm to refuse at {value}")
    for name in fields:
        assert_refused(script, name, value, in_tmp, capsys)


@pytest.mark.parametrize("script", SCRIPTS)
def test_minibatches_that_do_not_divide_the_rollout_are_refused(script, in_tmp, capsys):
    """A rollout of 10 steps cut into 4 minibatches would end in a sliver of 1 that gets a full optimiser step."""
    require(script, "num_minibatches", "num_envs", "num_steps")
    status, stderr = run_in_process(script, ["--num-envs", "2", "--num-steps", "5", "--num-minibatches", "4"], capsys)
    assert status == 2 and "--num-minibatches (4) must divide the rollout size 10" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_epsilon_schedule_that_would_rise_is_refused(script, in_tmp, capsys):
    """linear_schedule lets epsilon fall: asked to rise from 0.1 to 0.5, it would sit at 0.5 from the start."""
    require(script, "start_e", "end_e")
    status, stderr = run_in_process(script, ["--start-e", "0.1", "--end-e", "0.5"], capsys)
    assert status == 2 and "0 <= end-e <= start-e <= 1; got 0.1, 0.5" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_file_that_is_not_a_model_exits_2(script, in_tmp, capsys):
    require(script, "model_path")
    (in_tmp / "notes.txt").write_text("not a model")
    status, stderr = run_in_process(script, ["--model-path", "notes.txt", budget_flag(script), "0"], capsys)
    assert status == 2 and "--model-path" in stderr, stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_tyro_rejects_malformed_values(script, in_tmp, capsys):
    status, _ = run_in_process(script, ["--seed", "many"], capsys)
    assert status == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_episodes_other_seed_different(script, shared_run, tmp_path):
    """Against the tiny seed-1 run: a second seed-1 run in a fresh interpreter (its own string-hash seed,
    so an order that follows hashes shows), and a seed-2 run. A run's outcome is its log and its
    evaluation returns (planning is deterministic: there the seed only moves the evaluation episodes)."""
    def outcome(run_dir):
        return read_log(run_dir), read_summary(run_dir).get("eval_returns")

    def run(name: str, seed: str, fresh: bool = False):
        (tmp_path / name).mkdir()
        return outcome(run_ok(script, reproducible_args(script) + ["--seed", seed], tmp_path / name, fresh=fresh))

    # the shared tiny run where it is reproducible as it stands; a racing script's first run takes its REPRODUCIBLE_ARGS
    first = outcome(shared_run(script, "tiny")) if reproducible(script) else run("first", "1")
    assert run("second", "1", fresh=True) == first
    assert run("other_seed", "2") != first, "the seed changes nothing: is it used?"


def test_only_asynchronous_scripts_are_exempt_from_determinism():
    """Same seed, same run is the rule (CONVENTIONS.md §6); the one exemption is Hogwild (a3c.py), whose
    workers race by design, and it names the arguments under which its runs are reproducible (one worker),
    which the determinism and resume checks use. A new exemption must be added here on purpose."""
    exempt = {script for script in SCRIPTS if not reproducible(script)}
    assert exempt == {"a3c.py"}
    assert all(load_module(script).REPRODUCIBLE_ARGS for script in exempt)


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_offline_creates_a_wandb_run_with_the_figures(script, shared_run):
    require(script, "track")
    run_dir = shared_run(script, "flipped")
    records = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(records) == 1, "no offline W&B run in the run directory"
    content = records[0].read_bytes()
    keys = [b"charts/", run_dir.name.encode()]
    if (run_dir / "episodes.csv").exists():
        keys += [b"charts/episodic_return", b"charts/SPS"]
    if has_field(script, "eval_episodes"):
        keys.append(b"eval/return_mean")
    for key in keys:
        assert key in content, f"{key!r} was not logged to W&B"


@pytest.mark.parametrize("script", SCRIPTS)
def test_save_then_load_evaluates_to_the_same_returns(script, shared_run, tmp_path):
    """The flipped run saved its model; evaluating the saved model alone (budget 0) in a fresh
    process, with the same training flags, gives the same evaluation returns."""
    require(script, "save_model", "model_path")
    run_dir = shared_run(script, "flipped")
    models = [path for path in run_dir.iterdir() if path.suffix in (".pt", ".npz")]
    assert len(models) == 1, "--save-model wrote no model"
    trained = read_summary(run_dir)
    # the training flags again (the env, network shape and flipped options), without the budget
    training_flags = tiny_args(script)
    for flag in (budget_flag(script), "--eval-episodes"):
        if flag in training_flags:
            del training_flags[training_flags.index(flag):training_flags.index(flag) + 2]
    options = [flag for flag in flipped_flags(script) if flag not in ("--track", "--save-model")]
    episodes = ["--eval-episodes", str(trained["args"]["eval_episodes"])] if has_field(script, "eval_episodes") else []
    evaluated_dir = run_ok(script, training_flags + options + [
        "--model-path", str(models[0]), budget_flag(script), "0", *episodes], tmp_path)
    evaluated = read_summary(evaluated_dir)
    assert evaluated["global_step"] == 0
    # a script without evaluation episodes names the summary's evaluation figures in EVALUATION_FIGURES
    for figure in getattr(load_module(script), "EVALUATION_FIGURES", ("eval_returns",)):
        assert evaluated[figure] == trained[figure], figure
    if "--capture-video" in options:
        assert list((evaluated_dir / "videos").glob("*.mp4")), "--capture-video recorded nothing"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_module_env_id_trains_with_its_env_kwargs_and_reloads_in_another(script, in_tmp, capsys):
    """"custom_envs:Countdown-v0" from a module in the working directory trains and evaluates; the
    kwargs reach the env (every episode lasts `length` steps and returns `length`) and are recorded;
    the saved model reloads in a longer countdown (same spaces) with a warning, and evaluates there."""
    require(script, "env_id", "env_kwargs")
    env_kwargs = {"length": 7, **countdown_spaces(script, capsys)}
    shutil.copy(CUSTOM_ENV_MODULE, in_tmp)
    flags = without(tiny_args(script), "--env-id") + ["--env-id", CUSTOM_ENV_IDS[env_api(script)]] + \
        (["--flatten-obs"] if has_field(script, "flatten_obs") else [])
    run_dir = run_ok(script, flags + ["--env-kwargs", json.dumps(env_kwargs), "--save-model"], in_tmp)
    summary = read_summary(run_dir)
    assert json.loads(summary["args"]["env_kwargs"]) == env_kwargs
    assert summary["eval_returns"] == [7.0] * summary["args"]["eval_episodes"]
    if (run_dir / "episodes.csv").exists():
        episodes = {tuple(row[1:]) for row in read_log(run_dir)[1:]}
        assert episodes == {("7.0", "7")}, episodes
    model = next(path for path in run_dir.iterdir() if path.suffix in (".pt", ".npz"))
    longer = {**env_kwargs, "length": 9}
    result = run_script(script, without(flags, budget_flag(script), "--eval-episodes") + [
        "--env-kwargs", json.dumps(longer), "--model-path", str(model), *evaluate_only(script)], in_tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'length': 7" in warnings[0] and "'length': 9" in warnings[0], result.stderr
    reloaded = sorted((in_tmp / "runs").iterdir(), key=lambda path: path.stat().st_mtime)[-1]
    assert read_summary(reloaded)["eval_returns"] == [9.0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_dict_and_image_observations_are_refused_with_a_hint(script, in_tmp, capsys):
    """An MLP script refuses a Dict observation unless --flatten-obs, and an image always, in one line."""
    require(script, "flatten_obs")
    actions, custom_env_id = countdown_spaces(script, capsys)["actions"], CUSTOM_ENV_IDS[env_api(script)]
    for obs, hint in (("dict", "--flatten-obs"), ("image", "uint8")):
        status, stderr = run_in_process(script, ["--env-id", custom_env_id, "--env-kwargs",
                                                 json.dumps({"obs": obs, "actions": actions}), *evaluate_only(script)], capsys)
        lines = stderr.strip().splitlines()
        assert status == 2 and len(lines) == 1 and hint in lines[0] and custom_env_id in lines[0], stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_tensorboard_gets_the_figures_wandb_gets(script, shared_run):
    """--tensorboard writes event files in the run directory; every scalar there also went to W&B (the
    flipped run has both on), and the figures every run logs are among them."""
    require(script, "tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = shared_run(script, "flipped")
    assert list(run_dir.glob("events.out.tfevents.*")), "--tensorboard wrote no event file"
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    expected = {"charts/episodic_return", "charts/SPS"} if (run_dir / "episodes.csv").exists() else set()
    if has_field(script, "eval_episodes"):
        expected.add("eval/return_mean")
    assert tags and expected <= tags, tags
    wandb_record = next(run_dir.glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    assert all(tag.encode() in wandb_record for tag in tags), "TensorBoard has figures W&B has not"


def value_of(flags: list, name: str):
    return flags[flags.index(name) + 1] if name in flags else None


def saved_tensors(run_dir) -> dict:
    model = torch.load(next(run_dir.glob("*.pt")), weights_only=False)
    return {f"{key}.{name}": value for key, part in model.items() if isinstance(part, dict)
            for name, value in part.items() if isinstance(value, torch.Tensor)}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("env_state", ["pickled", "replayed"])
def test_a_killed_run_resumed_from_its_checkpoint_ends_as_if_never_stopped(script, env_state, tmp_path):
    """Killed (SIGKILL) after its first checkpoint and resumed with --resume, a run writes the same
    episodes.csv and the same final weights as the run that was never stopped, bitwise. "pickled": the
    tiny run's env (classic control) is saved as it is; "replayed": a MuJoCo or Box2D env, whose state
    does not pickle, is rebuilt by redoing its episode's reset and actions."""
    require(script, "resume", "checkpoint_every")
    flags = reproducible_args(script) + ["--seed", "1", "--save-model"]
    if env_state == "replayed":  # (games from OpenSpiel replay their moves whatever this test names)
        require(script, "env_id")  # a MuJoCo or Box2D env with the tiny run's kind of actions
        if env_api(script) != "gymnasium":
            pytest.skip(f"{script} takes {env_api(script)} envs: the pickled variant already replays them")
        tiny_env = gym.make(value_of(flags, "--env-id") or load_module(script).Args().env_id)
        continuous = isinstance(tiny_env.action_space, gym.spaces.Box)
        flags = without(flags, "--env-id") + ["--env-id", "InvertedPendulum-v5" if continuous else "LunarLander-v3"]
    flags += ["--checkpoint-every", str(int(value_of(flags, budget_flag(script))) // 2)]  # steps or gradient steps
    (tmp_path / "whole").mkdir()
    whole = run_ok(script, flags, tmp_path / "whole")

    stopped_dir = tmp_path / "stopped"
    stopped_dir.mkdir()
    process = subprocess.Popen([sys.executable, str(ALGORITHMS / script), *flags], cwd=stopped_dir,
                               env={**os.environ, "MUJOCO_GL": "egl"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(stopped_dir.glob("runs/*/checkpoints/checkpoint_*.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    checkpoint = sorted(stopped_dir.glob("runs/*/checkpoints/checkpoint_*.pt"))[0]
    assert len(list(checkpoint.parent.glob("checkpoint_*.pt"))) <= load_module(script).CHECKPOINTS_KEPT
    resumed = run_ok(script, flags + ["--resume", str(checkpoint)], stopped_dir)
    assert resumed == checkpoint.parent.parent, "the resumed run did not go on in its own run directory"
    assert read_log(resumed) == read_log(whole)
    # a script without evaluation episodes names the summary's evaluation figures in EVALUATION_FIGURES
    for figure in getattr(load_module(script), "EVALUATION_FIGURES", ("eval_returns",)):
        assert read_summary(resumed)[figure] == read_summary(whole)[figure], figure
    whole_tensors, resumed_tensors = saved_tensors(whole), saved_tensors(resumed)
    assert whole_tensors.keys() == resumed_tensors.keys()
    assert all(torch.equal(whole_tensors[name], resumed_tensors[name]) for name in whole_tensors)


@pytest.mark.parametrize("script", SCRIPTS)
def test_checkpoints_are_written_atomically_and_only_the_latest_kept(script, tmp_path, monkeypatch):
    """A write that dies midway leaves the previous checkpoint whole and no half-written one under the
    checkpoint's name; the directory keeps only the latest CHECKPOINTS_KEPT."""
    require(script, "resume")
    module = load_module(script)
    for step in (100, 200, 300):
        module.write_checkpoint({"step": step}, str(tmp_path), step)
    assert [torch.load(path)["step"] for path in sorted(tmp_path.glob("checkpoint_*.pt"))] == [200, 300][-module.CHECKPOINTS_KEPT:]

    def dies_midway(obj, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(module.torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        module.write_checkpoint({"step": 400}, str(tmp_path), 400)
    assert not (tmp_path / "checkpoint_000000000400.pt").exists()
    assert torch.load(sorted(tmp_path.glob("checkpoint_*.pt"))[-1])["step"] == 300


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bad_resume_exits_2_with_one_line(script, tmp_path, in_tmp, capsys):
    """A truncated checkpoint, another script's checkpoint, and the run's checkpoint given with other
    arguments are each refused before any work, in one line."""
    require(script, "resume")
    flags = tiny_args(script) + ["--seed", "1"]
    every = ["--checkpoint-every", str(int(value_of(flags, budget_flag(script))) // 2)]
    (tmp_path / "made").mkdir()
    run_dir = run_ok(script, flags + every + (["--save-model"] if has_field(script, "save_model") else []),
                     tmp_path / "made")
    checkpoint = sorted(run_dir.glob("checkpoints/checkpoint_*.pt"))[-1]
    truncated, other_script = tmp_path / "truncated.pt", tmp_path / "other_script.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    torch.save({"script": "not_" + script, "args": {}}, other_script)
    for resume, extra, named in ((truncated, [], "not a readable checkpoint"), (other_script, [], "not_" + script),
                                 (checkpoint, ["--seed", "2"], "--seed 1 (now 2)")):
        status, stderr = run_in_process(script, flags + extra + ["--resume", str(resume)], capsys)
        assert status == 2 and named in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (in_tmp / "runs").exists(), "a refused resume must not start a run"

    # A run that started from a saved model resumes without it (--resume refuses --model-path): the
    # checkpoint holds the weights it had reached.
    if has_field(script, "save_model") and has_field(script, "model_path"):
        model = next(path for path in run_dir.iterdir() if path.suffix in (".pt", ".npz"))
        status, stderr = run_in_process(script, flags + every + ["--model-path", str(model)], capsys)
        assert status == 0, stderr[-2000:]
        fine_tuned = sorted((in_tmp / "runs").glob("*/checkpoints/checkpoint_*.pt"))[0]
        status, stderr = run_in_process(script, flags + every + ["--resume", str(fine_tuned)], capsys)
        assert status == 0, stderr[-2000:]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_clock_that_does_not_move_divides_nothing_by_zero(script, in_tmp, capsys, monkeypatch):
    """A coarse clock (time.time() ticks every 15.6 ms on some systems) can read the same at the start of a
    run and at its first episode's end: every rate a run logs must survive an elapsed time of 0."""
    require(script, "tensorboard")
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)
    status, stderr = run_in_process(script, tiny_args(script) + ["--tensorboard"], capsys)
    assert status == 0, stderr[-2000:]


@pytest.mark.parametrize("script", SCRIPTS)
def test_nan_is_refused_in_every_number(script, in_tmp, capsys):
    """NaN passes a range check written as "x <= 0" (every comparison with NaN is False): a learning rate of
    nan was a torch traceback, a clip norm of nan a run on nan gradients. Every float argument refuses it."""
    fields = [field.name for field in args_fields(script) if "float" in str(field.type)]
    if not fields:
        pytest.skip(f"{script} has no float argument")
    for name in fields:
        assert_refused(script, name, "nan", in_tmp, capsys)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_negative_count_is_refused(script, in_tmp, capsys):
    """Every integer argument (a budget, size, count, interval or limit) refuses -1 in one line; a time limit
    of -1 had cut every episode after its first step."""
    fields = [field.name for field in args_fields(script) if "int" in str(field.type) and "tuple" not in str(field.type).lower()
              and field.name != "seed"]  # the seed's range has its own case above
    for name in fields:
        assert_refused(script, name, "-1", in_tmp, capsys)
