"""The RLHF pipeline, stage 1 (rlhf_sft.py): the hidden reward by hand, the demonstration grammar, the
noisy Bradley-Terry labels, the preference file, and a reference that learns the grammar."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from conftest import ROOT, load_module, read_summary, run_in_process, run_ok

pytestmark = pytest.mark.xdist_group("rlhf")  # one worker makes the stage-1 run the learning tests share
sft = load_module("rlhf_sft.py")
SPEC = sft.task_spec("language")


def test_the_hidden_reward_by_hand():
    prompt = ["rain", "work"]
    # tone +2 - 1, on topic (+1), 5 words (no length cost), finished
    assert sft.true_reward(SPEC, prompt, ["rain", "great", "love", "sad", "the", "<eos>"]) == 2.0
    # tone -2, off topic, 2 words: -0.5 * |2 - 5|
    assert sft.true_reward(SPEC, prompt, ["awful", "hate", "<eos>"]) == -2.0 - 1.5
    # no <eos> within the limit: every word counts for tone and length, and the unfinished cost
    unfinished = ["good"] * SPEC["max_completion"]
    assert sft.true_reward(SPEC, prompt, unfinished) == 8.0 - 0.5 * 3 - SPEC["unfinished_cost"]
    # words after <eos> do not count
    assert sft.true_reward(SPEC, prompt, ["<eos>", "great"]) == -0.5 * 5


def test_demonstrations_follow_the_grammar():
    rng = np.random.default_rng(0)
    prompts = [sft.sample_prompt(SPEC, rng) for _ in range(3000)]
    demos = [sft.demonstration(SPEC, prompt, rng) for prompt in prompts]
    assert all(demo[-1] == "<eos>" and 2 <= len(demo) - 1 <= sft.MAX_COMPLETION - 1 for demo in demos)
    assert all(set(demo[:-1]) <= set(sft.TOPICS + sft.POSITIVE + sft.NEGATIVE + sft.FILLERS) for demo in demos)
    starts_on_topic = np.mean([demo[0] in prompt for prompt, demo in zip(prompts, demos)])
    assert abs(starts_on_topic - sft.DEMO_TOPIC_PROBABILITY) < 0.03
    assert all(len(set(prompt)) == sft.PROMPT_LENGTH and set(prompt) <= set(sft.TOPICS) for prompt in prompts)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_labels_are_noisy_the_bradley_terry_way(temperature):
    """y1 has the higher hidden reward by 1; it must be chosen with probability sigmoid(1 / T) (4,000 draws,
    within 4 standard deviations)."""
    prompt, y1, y2 = ["rain", "work"], ["good", "the", "a", "<eos>"], ["the", "a", "the", "<eos>"]
    margin = sft.true_reward(SPEC, prompt, y1) - sft.true_reward(SPEC, prompt, y2)
    assert margin == 1.0
    rng = np.random.default_rng(1)
    draws = 4000
    first = sum(sft.label(SPEC, prompt, y1, y2, temperature, rng)[0] == y1 for _ in range(draws))
    p = 1.0 / (1.0 + np.exp(-margin / temperature))
    assert abs(first / draws - p) < 4 * np.sqrt(p * (1 - p) / draws)


@pytest.mark.learning
def test_the_reference_learns_the_grammar_and_writes_a_preference_file(tmp_path):
    """Seed 1, 1,500 steps: the reference's samples finish and score like the demonstrations (an untrained
    model's do not), the held-out loss is near the grammar's, and every pair in the file is well formed."""
    run_dir = run_ok("rlhf_sft.py", ["--train-steps", "1500", "--num-pairs", "300", "--save-model"], tmp_path)
    summary = read_summary(run_dir)
    assert abs(summary["reference_true_reward_mean"] - summary["demonstration_true_reward_mean"]) < 0.3, summary
    untrained = load_module("rlhf_sft.py").GRULanguageModel(len(SPEC["vocab"]), 32, 64)
    samples = sft.sample(untrained, SPEC, [["rain", "work"]] * 200, torch.Generator().manual_seed(0))
    assert np.mean([sft.true_reward(SPEC, ["rain", "work"], y) for y in samples]) < -1.0
    rows = [json.loads(line) for line in (run_dir / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 300 and all(set(row) == {"prompt", "chosen", "rejected"} for row in rows)
    assert all(row["chosen"] != row["rejected"] for row in rows)
    assert all(set(" ".join(row.values()).split()) <= set(SPEC["vocab"]) for row in rows)
    saved = torch.load(run_dir / "reference.pt")
    assert saved["spec"] == SPEC


def test_a_reference_of_another_task_is_refused(tmp_path, in_tmp, capsys):
    model = sft.GRULanguageModel(len(SPEC["vocab"]), 32, 64)
    other = {**SPEC, "target_length": 3}
    torch.save({"model": model.state_dict(), "spec": other}, tmp_path / "other.pt")
    status, stderr = run_in_process("rlhf_sft.py", ["--model-path", str(tmp_path / "other.pt"), "--train-steps", "0"], capsys)
    assert status == 2 and "another task spec" in stderr and len(stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------- stage 2
reward_model = load_module("rlhf_reward_model.py")


def test_the_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    expected = -(np.log(1 / (1 + np.exp(-1.0))) + np.log(0.5)) / 2
    assert reward_model.bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected)


def test_the_bayes_optimal_accuracy_is_the_hidden_rewards_own():
    prompt = ["rain", "work"]
    better, worse = ["good", "the", "a", "<eos>"], ["the", "a", "the", "<eos>"]  # r* differs by 1
    pairs = [(prompt, better, worse), (prompt, worse, better), (prompt, better, better)]
    assert reward_model.bayes_accuracy(SPEC, pairs) == pytest.approx((1 + 0 + 0.5) / 3)
    assert reward_model.true_reward(SPEC, prompt, better) == sft.true_reward(SPEC, prompt, better)


def test_preferences_from_another_vocabulary_are_refused(tmp_path, capsys):
    from conftest import sft_artifacts

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"prompt": "rain work", "chosen": "bonjour <eos>", "rejected": "the <eos>"}) + "\n")
    status, stderr = run_in_process("rlhf_reward_model.py", ["--reference-path", str(sft_artifacts() / "reference.pt"),
                                                             "--preferences", str(foreign)], capsys)
    assert status == 2 and "outside the reference's vocabulary" in stderr and "bonjour" in stderr


@pytest.fixture(scope="module")
def stage_1(tmp_path_factory):
    """Stage 1 at its defaults, seed 1 (3,000 steps, 12,000 pairs): the reference and the pairs the later
    stages' learning tests start from."""
    return run_ok("rlhf_sft.py", ["--save-model"], tmp_path_factory.mktemp("stage_1"))


@pytest.mark.learning
def test_the_reward_model_comes_within_a_few_points_of_the_bayes_optimal_accuracy(stage_1, tmp_path):
    """The defaults, seed 1 (stage 2: 600 steps): held-out accuracy within 4 points of r*'s own on the same
    labels (measured: 0.785 against 0.807), and scores that correlate with the hidden reward."""
    sft_dir = stage_1
    run_dir = run_ok("rlhf_reward_model.py", ["--reference-path", str(sft_dir / "reference.pt"),
                                              "--preferences", str(sft_dir / "preferences.jsonl")], tmp_path)
    summary = read_summary(run_dir)
    assert summary["heldout_accuracy"] >= summary["bayes_optimal_accuracy"] - 0.04, summary
    assert summary["correlation_with_hidden_reward"] > 0.85, summary


# ---------------------------------------------------------------------------------------- stage 4
dpo = load_module("rlhf_dpo.py")


def test_the_dpo_loss_by_hand():
    policy_chosen, policy_rejected = torch.tensor([-1.0]), torch.tensor([-3.0])
    reference_chosen, reference_rejected = torch.tensor([-2.0]), torch.tensor([-2.0])
    # margin (-1 + 2) - (-3 + 2) = 2; loss = -log sigmoid(beta * 2)
    assert dpo.dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, 0.5).item() == \
        pytest.approx(-np.log(1 / (1 + np.exp(-1.0))))


def test_a_sequence_log_probability_counts_the_completion_tokens_only():
    """A model with constant logits gives every token 1/V: log pi(y|x) = len(y) * log(1/V) whatever the prompt."""
    model = dpo.GRULanguageModel(len(SPEC["vocab"]), 8, 8)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    logprobs = dpo.sequence_logprobs(model, SPEC, [["rain", "work"], ["sun", "cat"]],
                                     [["good", "<eos>"], ["the", "a", "very", "<eos>"]], torch.device("cpu"))
    assert logprobs.tolist() == pytest.approx([2 * np.log(1 / len(SPEC["vocab"])), 4 * np.log(1 / len(SPEC["vocab"]))])


@pytest.mark.learning
def test_dpo_raises_the_hidden_reward_at_a_bounded_kl(stage_1, tmp_path):
    """The defaults, seed 1 (beta 0.1, 600 steps): the policy beats the reference by the hidden reward in
    most prompts (measured: win rate 0.995, r* 4.73 against -0.12, KL 6.0 nats), and a larger beta keeps
    it closer to the reference."""
    flags = ["--reference-path", str(stage_1 / "reference.pt"), "--preferences", str(stage_1 / "preferences.jsonl")]
    loose, tight = (read_summary(run_ok("rlhf_dpo.py", flags + ["--beta", beta], tmp_path)) for beta in ("0.1", "0.5"))
    assert loose["win_rate"] > 0.9 and loose["true_reward_mean"] > loose["reference_true_reward_mean"] + 3.0, loose
    assert tight["kl_to_reference"] < loose["kl_to_reference"], (tight, loose)


# ---------------------------------------------------------------------------------------- stage 3
ppo = load_module("rlhf_ppo.py")


def test_the_kl_penalised_reward_per_token_by_hand():
    """Two completions of 3 and 2 counted tokens (max 3); beta 0.5: every counted token pays -beta times its
    log-ratio, the last counted one also gets the score; uncounted tokens get nothing."""
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]])
    reference_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards = ppo.kl_penalised_rewards(logprobs, reference_logprobs, torch.tensor([2.0, -1.0]), mask, 0.5)
    assert rewards.flatten().tolist() == pytest.approx([-0.25, 0.5, 2.0, -0.5, -1.0, 0.0])


def test_gae_over_a_completion_by_hand():
    """gamma 1, lambda 0.5; the second completion ends after 2 tokens, so V after its last token is 0."""
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 0.3], [1.0, 1.5, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages = ppo.compute_gae(rewards, values, mask, 0.5)
    d2, d1, d0 = 1.0 - 0.3, 0.0 + 0.3 - 0.4, 0.0 + 0.4 - 0.5
    first = [d0 + 0.5 * (d1 + 0.5 * d2), d1 + 0.5 * d2, d2]
    e1, e0 = 2.0 - 1.5, 1.0 + 1.5 - 1.0
    assert advantages.flatten().tolist() == pytest.approx([*first, e0 + 0.5 * e1, e1, 0.0])


def test_completions_count_their_tokens_up_to_and_with_eos():
    torch.manual_seed(0)
    policy = ppo.PolicyWithValue(len(SPEC["vocab"]), 8, 8)
    sequences, mask = ppo.sample_completions(policy, SPEC, [["rain", "work"]] * 200, torch.Generator().manual_seed(0))
    eos = SPEC["vocab"].index("<eos>")
    for row, kept in zip(sequences[:, 4:].tolist(), mask.tolist()):
        end = row.index(eos) + 1 if eos in row else len(row)
        assert kept == [1.0] * end + [0.0] * (len(row) - end)


@pytest.mark.learning
def test_ppo_kl_raises_the_hidden_reward_it_never_sees(stage_1, tmp_path):
    """The defaults, seed 1 (reward model: 600 steps; PPO: beta 0.1, 100 iterations): the policy beats the
    reference by the hidden reward (measured: win rate 0.987, r* 4.55 against -0.12, KL 4.7 nats)."""
    reward_dir = run_ok("rlhf_reward_model.py", ["--reference-path", str(stage_1 / "reference.pt"), "--preferences",
                                                 str(stage_1 / "preferences.jsonl"), "--save-model"], tmp_path)
    run_dir = run_ok("rlhf_ppo.py", ["--reference-path", str(stage_1 / "reference.pt"),
                                     "--reward-model-path", str(reward_dir / "reward_model.pt")], tmp_path)
    summary = read_summary(run_dir)
    assert summary["win_rate"] > 0.9 and summary["true_reward_mean"] > summary["reference_true_reward_mean"] + 3.0, summary


# ---------------------------------------------------------------------------------------- the stages' files
def test_each_stage_refuses_another_stages_file_in_one_line(tmp_path, capsys):
    """Every saved file names the script that saved it: a reward model given as a reference, a reference as a
    reward model or a DPO policy as PPO's starting policy (no value head) are refused before any work."""
    from conftest import artifacts

    reference, reward = artifacts("sft") / "reference.pt", artifacts("rm") / "reward_model.pt"
    assert torch.load(reference)["script"] == "rlhf_sft.py" and torch.load(reward)["script"] == "rlhf_reward_model.py"
    dpo_policy = tmp_path / "policy.pt"
    torch.save({**torch.load(reference), "script": "rlhf_dpo.py"}, dpo_policy)  # a DPO policy: the reference's form
    for script, flags, named in [
        ("rlhf_ppo.py", ["--reference-path", str(reward), "--reward-model-path", str(reward)],
         "--reference-path " + str(reward) + " was saved by rlhf_reward_model.py"),
        ("rlhf_ppo.py", ["--reference-path", str(reference), "--reward-model-path", str(reference)],
         "--reward-model-path " + str(reference) + " was saved by rlhf_sft.py"),
        ("rlhf_ppo.py", ["--reference-path", str(reference), "--reward-model-path", str(reward), "--model-path",
                         str(dpo_policy)], "was saved by rlhf_dpo.py"),
        ("rlhf_dpo.py", ["--reference-path", str(dpo_policy), "--preferences", str(artifacts("sft") / "preferences.jsonl")],
         "was saved by rlhf_dpo.py"),
        ("rlhf_reward_model.py", ["--reference-path", str(reward), "--preferences",
                                  str(artifacts("sft") / "preferences.jsonl")], "was saved by rlhf_reward_model.py"),
        ("rlhf_sft.py", ["--model-path", str(reward), "--train-steps", "0"], "was saved by rlhf_reward_model.py"),
    ]:
        status, stderr = run_in_process(script, flags, capsys)
        assert status == 2 and named in stderr and len(stderr.strip().splitlines()) == 1, (script, stderr)


def test_settings_that_cannot_work_are_refused(capsys):
    from conftest import artifacts

    ppo_files = ["--reference-path", str(artifacts("sft") / "reference.pt"),
                 "--reward-model-path", str(artifacts("rm") / "reward_model.pt")]
    for script, flags, named in [
        ("rlhf_ppo.py", ppo_files + ["--adaptive-kl", "--kl-coef", "0"], "cannot move it from 0"),
        ("rlhf_sft.py", ["--num-demonstrations", "1"], "--num-demonstrations must be >= 2"),
    ]:
        status, stderr = run_in_process(script, flags, capsys)
        assert status == 2 and named in stderr and len(stderr.strip().splitlines()) == 1, (script, stderr)


# ---------------------------------------------------------------------------------------- the exact check
_bandit_spec = importlib.util.spec_from_file_location("rlhf_bandit", ROOT / "benchmarks" / "rlhf" / "bandit.py")
bandit = importlib.util.module_from_spec(_bandit_spec)
_bandit_spec.loader.exec_module(bandit)
BANDIT = sft.task_spec("bandit")


def test_the_bandit_rewards_each_arm_by_its_number_and_demonstrates_with_known_odds():
    for arm, value in sft.BANDIT_ARMS.items():
        assert sft.true_reward(BANDIT, ["pick"], [arm]) == value
    assert sft.true_reward(BANDIT, ["pick"], ["<eos>"]) == 0.0  # an empty completion: no term applies
    rng = np.random.default_rng(0)
    assert {tuple(sft.sample_prompt(BANDIT, rng)) for _ in range(20)} == {("pick",)}
    draws = [sft.demonstration(BANDIT, ["pick"], rng) for _ in range(20_000)]
    assert all(len(demo) == 1 for demo in draws)
    frequencies = np.array([sum(demo[0] == arm for demo in draws) for arm in sft.BANDIT_ARMS]) / len(draws)
    assert np.abs(frequencies - sft.BANDIT_DEMO_PROBABILITIES).max() < 0.01
    assert bandit.hidden_rewards(BANDIT)[BANDIT["vocab"].index("superb")] == sft.BANDIT_ARMS["superb"]


def test_the_kl_regularised_optimum_by_hand():
    """pi_ref (1/2, 1/2), r (0, log 3), beta 1: pi* = (1/4, 3/4); and no other two-arm policy scores higher
    on E[r] - beta KL(pi || pi_ref)."""
    reference, reward = np.array([0.5, 0.5]), np.array([0.0, np.log(3.0)])
    optimum = bandit.kl_regularised_optimum(reference, reward, 1.0)
    assert optimum.tolist() == pytest.approx([0.25, 0.75])

    def objective(pi: np.ndarray, beta: float) -> float:
        return float(pi @ reward - beta * (pi * np.log(pi / reference)).sum())

    for beta in (0.3, 1.0, 4.0):
        best = bandit.kl_regularised_optimum(reference, reward, beta)
        grid = [np.array([p, 1 - p]) for p in np.linspace(0.001, 0.999, 999)]
        assert objective(best, beta) >= max(objective(pi, beta) for pi in grid) - 1e-12
    assert bandit.kl_regularised_optimum(reference, 1e4 * reward, 1.0).tolist() == pytest.approx([0.0, 1.0])


def test_total_variation_and_the_recovery_error_by_hand():
    assert bandit.total_variation(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])) == pytest.approx(0.5)
    arms = np.array([True, True, True, False])
    reward = np.array([-1.0, 0.0, 1.0, 0.0])
    assert bandit.recovery_error(reward + 7.0, reward, arms) == pytest.approx(0.0)  # a constant is free
    assert bandit.recovery_error(reward + np.array([0.0, 0.0, 0.3, 9.0]), reward, arms) == pytest.approx(0.2)


def test_the_bradley_terry_table_recovers_the_rewards_that_labelled_its_pairs(tmp_path):
    """20,000 pairs of three words labelled at temperature 1 by rewards (0, 0.5, 1.5): the fitted table
    matches them up to a constant within 0.06 (about 3 standard errors)."""
    vocab, truth = ["a", "b", "c"], np.array([0.0, 0.5, 1.5])
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(20_000):
        i, j = rng.choice(3, size=2, replace=False)
        first_wins = rng.random() < 1.0 / (1.0 + np.exp(-(truth[i] - truth[j])))
        chosen, rejected = (i, j) if first_wins else (j, i)
        lines.append(json.dumps({"prompt": "pick", "chosen": vocab[chosen], "rejected": vocab[rejected]}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    fitted = bandit.bradley_terry_fit(tmp_path / "pairs.jsonl", vocab)
    assert bandit.recovery_error(fitted, truth, np.ones(3, dtype=bool)) < 0.06


@pytest.mark.learning
def test_ppo_and_dpo_reach_the_closed_form_optimum_of_the_bandit(tmp_path):
    """benchmarks/rlhf/bandit.py's seed 1 at beta 0.5 (its flags: the reward model to convergence): the reward model holds r*
    up to a constant, and PPO and DPO end near pi* = pi_ref exp(r / beta) / Z, far nearer than the reference
    started (measured: recovery 0.04; TV: PPO 0.06, DPO 0.04, against the reference's 0.65 and 0.58)."""
    result = bandit.one_seed(1, [0.5], tmp_path)
    figures = result["betas"][0.5]
    assert result["recovery_error"] < 0.1, result
    assert figures["ppo_reference_tv"] > 0.3 and figures["dpo_reference_tv"] > 0.3, figures
    assert figures["ppo_tv"] < 0.1 and figures["dpo_tv"] < 0.1, figures
