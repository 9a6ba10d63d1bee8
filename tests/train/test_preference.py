"""Stages rm and dpo: preference formats, the DPO loss by hand, rm accuracy, dpo margin, and `tunesmith score`."""

import json
import math
import random

import pytest
import torch

from tests.conftest import run_cli, write_jsonl
from tunesmith.config import load_config
from tunesmith.data.formats import Preference, to_canonical
from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError
from tunesmith.stages.dpo import dpo_loss, dpo_loss_by_hand
from tunesmith.stages.orpo import orpo_loss
from tunesmith.train.loop import train

USER = [{"role": "user", "content": "Q"}]


@pytest.mark.parametrize("row, messages", [
    ({"prompt": "Q", "chosen": "good", "rejected": "bad"}, USER),
    ({"instruction": "Q", "chosen": "good", "rejected": "bad"}, USER),
    ({"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "good"},
      "rejected": {"from": "gpt", "value": "bad"}}, USER),
    ({"chosen": [*USER, {"role": "assistant", "content": "good"}],
      "rejected": [*USER, {"role": "assistant", "content": "bad"}]}, USER),
    ({"prompt": USER, "chosen": [{"role": "assistant", "content": "good"}],
      "rejected": [{"role": "assistant", "content": "bad"}]}, USER),
])
def test_preference_formats(tmp_path, row, messages):
    [pref] = to_canonical(read_rows(str(write_jsonl(tmp_path / "p.jsonl", [row]))))
    assert pref == Preference(messages, "good", "bad", None, f"{tmp_path / 'p.jsonl'}:1")


def test_public_preference_datasets_as_published(tmp_path):
    """Intel/orca_dpo_pairs (system, question, chosen, rejected) and Anthropic/hh-rlhf (two whole transcripts that
    share every turn but the last answer), rows as those datasets publish them."""
    orca = {"system": "Be brief.", "question": "Q", "chosen": "good", "rejected": "bad"}
    hh = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Q\n\nAssistant: good",
          "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Q\n\nAssistant: bad"}
    path = write_jsonl(tmp_path / "p.jsonl", [orca])
    assert to_canonical(read_rows(str(path))) == [Preference(USER, "good", "bad", "Be brief.", f"{path}:1")]
    path = write_jsonl(tmp_path / "hh.jsonl", [hh])
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, *USER]
    assert to_canonical(read_rows(str(path))) == [Preference(turns, "good", "bad", None, f"{path}:1")]
    hh["rejected"] = "\n\nHuman: Hey\n\nAssistant: Hello!\n\nHuman: Q\n\nAssistant: bad"
    with pytest.raises(DataError, match=r"hh\.jsonl:1: chosen and rejected conversations differ before"):
        to_canonical(read_rows(str(write_jsonl(path, [hh]))))


def test_conversations_keep_their_system_message_next_to_a_prompt_string(tmp_path):
    """mlabonne/orpo-dpo-mix-40k: a prompt string and whole conversations that open with a system message."""
    def chat(answer):
        return [{"role": "system", "content": "Be brief."}, *USER, {"role": "assistant", "content": answer}]

    row = {"source": "x", "prompt": "Q", "question": "Q", "chosen": chat("good"), "rejected": chat("bad")}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    assert to_canonical(read_rows(str(path))) == [Preference(USER, "good", "bad", "Be brief.", f"{path}:1")]


def test_bad_preference_rows(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "chosen": "good", "rejected": ""}])
    with pytest.raises(DataError, match=r"p\.jsonl:1: 'rejected' is missing or empty"):
        to_canonical(read_rows(str(path)))


def test_dpo_loss_matches_hand_computed_example():
    beta, pc, pr, rc, rr = 0.1, -12.0, -15.0, -13.0, -14.0
    # z = 0.1 * ((-12 + 13) - (-15 + 14)) = 0.2; loss = log(1 + e^-0.2) = 0.598139...
    chosen, rejected = torch.tensor([beta * (pc - rc)]), torch.tensor([beta * (pr - rr)])
    assert dpo_loss(chosen, rejected).item() == pytest.approx(math.log1p(math.exp(-0.2)), rel=1e-6)
    assert dpo_loss_by_hand(pc, pr, rc, rr, beta) == pytest.approx(0.5981388693, rel=1e-9)


def test_orpo_loss_matches_the_formula_as_trl_and_llamafactory_write_it():
    chosen, rejected, beta = -0.5, -1.5, 0.1  # mean log-probabilities per answer token
    odds = (chosen - rejected) - (math.log1p(-math.exp(chosen)) - math.log1p(-math.exp(rejected)))
    expected = -chosen - beta * -math.log1p(math.exp(-odds))  # nll - beta * log sigmoid(log odds ratio)
    loss, ratio = orpo_loss(torch.tensor([chosen]), torch.tensor([rejected]), beta)
    assert loss.item() == pytest.approx(expected, rel=1e-6) and loss.item() == pytest.approx(0.5170859, abs=1e-7)
    assert ratio.item() == pytest.approx(-math.log1p(math.exp(-odds)), rel=1e-6)
    sure, _ = orpo_loss(torch.tensor([0.0]), torch.tensor([-1.0]), beta)  # p = 1: infinite odds, a finite loss
    assert torch.isfinite(sure).all()


@pytest.fixture
def separable_pairs(tmp_path):
    rng = random.Random(0)
    rows = [{"prompt": f"Customer question {i} about {rng.choice(['price', 'hours', 'app'])}?",
             "chosen": "Yes, gladly.", "rejected": "No."} for i in range(64)]
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def preference_config(tiny_model_dir, data, out, stage, *extra):
    return load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", "val_size=16", f"stage={stage}",
                              "max_steps=15", "per_device_batch_size=4", "gradient_accumulation_steps=1",
                              "learning_rate=1e-2", "lr_scheduler=constant", "eval_steps=5", f"output_dir={out}",
                              *extra])


def log_lines(out, key):
    return [r for r in map(json.loads, (out / "trainer_log.jsonl").read_text().splitlines()) if key in r]


def test_reward_model_separates_trivial_pairs_and_scores(tiny_model_dir, separable_pairs, tmp_path):
    result = train(preference_config(tiny_model_dir, separable_pairs, tmp_path / "rm", "rm"), show_progress=False)
    assert result.eval_metrics["accuracy"] > 0.9
    train_lines = log_lines(tmp_path / "rm", "loss")
    # Accuracy is a fraction of pairs (not of answer tokens), in the log as in the evaluation.
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in train_lines) and train_lines[-1]["accuracy"] > 0.9
    assert train_lines[0]["loss"] == pytest.approx(result.losses[0])
    assert result.eval_losses[-1][1] < result.eval_losses[0][1]
    scored = run_cli("score", str(tmp_path / "rm"), "--prompt", "Customer question 99 about price?",
                     "--response", "Yes, gladly.", "--response", "No.")
    assert scored.returncode == 0, scored.stderr[-2000:]
    good, bad = (float(line.split("\t")[0]) for line in scored.stdout.strip().splitlines())
    assert good > bad


def test_dpo_widens_the_margin(tiny_model_dir, separable_pairs, tmp_path):
    out = tmp_path / "dpo"
    result = train(preference_config(tiny_model_dir, separable_pairs, out, "dpo", "beta=0.5"), show_progress=False)
    evals = log_lines(out, "eval_loss")
    assert evals[0]["eval_margin"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before training
    # Step 1: policy == reference, so every pair's loss is -log sigmoid(0) = ln 2 - per pair, not per token.
    first = log_lines(out, "loss")[0]
    assert first["step"] == 1 and first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first["accuracy"] == 0.0 and first["margin"] == pytest.approx(0.0, abs=1e-6)
    assert log_lines(out, "loss")[-1]["accuracy"] > 0.9
    assert evals[-1]["eval_margin"] > evals[0]["eval_margin"] + 0.5
    assert evals[-1]["eval_rewards/chosen"] > evals[-1]["eval_rewards/rejected"]
    assert result.eval_metrics["accuracy"] > 0.9
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"  # loads for chat


def test_orpo_learns_the_chosen_answers_and_to_prefer_them_without_a_reference(tiny_model_dir, separable_pairs,
                                                                               tmp_path):
    out = tmp_path / "orpo"
    result = train(preference_config(tiny_model_dir, separable_pairs, out, "orpo"), show_progress=False)
    evals = log_lines(out, "eval_loss")
    # The SFT half: chosen answers become likelier (10.9 -> 9.6 nats per token here, as sft itself gets this tiny
    # random model in 15 steps)
    assert evals[-1]["eval_nll"] < evals[0]["eval_nll"] - 1.0
    assert evals[-1]["eval_margin"] > evals[0]["eval_margin"] + 0.5 and result.eval_metrics["accuracy"] > 0.9
    assert log_lines(out, "loss")[-1]["log_odds_ratio"] > log_lines(out, "loss")[0]["log_odds_ratio"]
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"  # loads for chat


@pytest.mark.parametrize("stage", ["rm", "dpo", "orpo"])
def test_preference_stages_from_cli(tiny_model_dir, separable_pairs, tmp_path, stage):
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={separable_pairs}", f"stage={stage}",
                     "max_steps=3", "val_size=4", f"output_dir={tmp_path / stage}")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / stage / "trainer_log.jsonl").read_text().splitlines()]
    assert "accuracy" in lines[1] and "eval_accuracy" in lines[0]


def test_dpo_with_full_method_uses_a_frozen_reference(tiny_model_dir, separable_pairs, tmp_path):
    cfg = preference_config(tiny_model_dir, separable_pairs, tmp_path / "full", "dpo", "method=full",
                            "learning_rate=1e-3", "max_steps=5")
    result = train(cfg, show_progress=False)
    assert result.eval_losses[-1][1] < result.eval_losses[0][1]


def test_preference_stage_rejects_plain_rows(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "Q", "output": "A"}] * 4)
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={data}", "stage=rm", "max_steps=1",
                     f"output_dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "needs preference rows" in result.stderr


def test_dpo_refuses_a_pair_with_the_same_answer_twice(tiny_model_dir, tmp_path):
    rows = [{"prompt": "Q1", "chosen": "Yes.", "rejected": "No."}, {"prompt": "Q2", "chosen": "Same.",
                                                                    "rejected": " Same. "}]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={data}", "stage=dpo", "max_steps=1",
                     f"output_dir={tmp_path / 'r'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {data}:2: 'chosen' and 'rejected' are the same answer, so there is "
                                     "nothing to prefer; fix the pair or delete the row")
