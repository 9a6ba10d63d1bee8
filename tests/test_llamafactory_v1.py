"""A LLaMA-Factory v1 config (its examples/v1: nested peft_config / quant_config, train_dataset naming a dataset YAML,
rows of v1 messages with content parts) trains as it is: each key translated, dropped and said, or refused by name."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import QA, run_cli, write_jsonl
from tunesmith.config import load_config
from tunesmith.data.formats import Conversation, Preference, to_canonical
from tunesmith.data.sources import read_rows
from tunesmith.errors import ConfigError, DataError

# The shape of LLaMA-Factory's examples/v1/train_lora/train_lora_sft.yaml (written here, not copied).
V1_SFT = {
    "model": "org/some-model", "model_class": "llm",
    "peft_config": {"name": "lora", "r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all"},
    "kernel_config": {"name": "auto"}, "dist_config": {"name": "fsdp2", "dcp_path": None},
    "train_dataset": "data/sft.yaml", "output_dir": "./outputs/test_lora", "micro_batch_size": 1,
    "cutoff_len": 2048, "learning_rate": 1.0e-4, "max_steps": 10, "sample_backend": "hf", "max_new_tokens": 128,
}


def v1_message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "value": text}], "loss_weight": float(role == "assistant")}


@pytest.fixture
def v1_folder(tmp_path, monkeypatch):
    """A LLaMA-Factory checkout's layout: data/sft.yaml naming an alpaca file and a file of v1 messages."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "faq.json").write_text(json.dumps([{"instruction": q, "output": a} for q, a in QA * 4]))
    write_jsonl(data / "v1.jsonl", [{"messages": [v1_message("user", q), v1_message("assistant", a)]} for q, a in QA])
    (data / "sft.yaml").write_text("faq:\n  path: data/faq.json\n  source: local\n  converter: alpaca\n"
                                   "v1:\n  path: data/v1.jsonl\n  source: local\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def v1_yaml(folder: Path, **changes) -> Path:
    path = folder / "train_v1.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in {**V1_SFT, **changes}.items() if v is not ...}, sort_keys=False))
    return path


def test_a_v1_lora_config_becomes_tunesmiths(v1_folder, caplog):
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        cfg = load_config(v1_yaml(v1_folder, global_batch_size=4, micro_batch_size=2, bf16=True))
    assert (cfg.model, cfg.method, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target) == (
        "org/some-model", "lora", 16, 32, 0.05, "all-linear")
    assert (cfg.per_device_batch_size, cfg.gradient_accumulation_steps, cfg.max_steps, cfg.dtype) == (2, 2, 10, "bf16")
    assert (cfg.lr_scheduler, cfg.weight_decay, cfg.distributed) == ("constant", 0.01, "fsdp")  # v1's trainer
    assert cfg.dataset == ["data/faq.json", "data/v1.jsonl"]
    said = caplog.text
    assert "read as a LLaMA-Factory v1 config" in said and "sample_backend" in said and "kernel_config" in said


@pytest.mark.parametrize("changes, expected", [
    ({"peft_config": ...}, {"method": "full"}),  # v1 trains every weight without a peft_config
    ({"peft_config": {"name": "freeze", "freeze_trainable_layers": 4, "freeze_extra_modules": None}},
     {"method": "freeze", "freeze_layers": 4, "freeze_modules": ""}),
    ({"peft_config": {"name": "lora"}}, {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05}),  # v1's defaults
    ({"peft_config": {"name": "lora", "use_dora": True}}, {"method": "dora"}),
    ({"quant_config": {"name": "bnb", "quantization_bit": 8}}, {"method": "qlora", "quantization_bit": 8}),
    ({"quant_config": None}, {"method": "lora"}),
    ({"bf16": False, "max_steps": None}, {"dtype": "fp32", "max_steps": 0}),
    ({"pref_loss": "orpo", "pref_beta": 0.2}, {"stage": "orpo", "beta": 0.2}),
    ({"enable_activation_checkpointing": False, "resume_from_checkpoint": "auto"},
     {"gradient_checkpointing": False, "resume": True}),
    ({"dist_config": {"name": "deepspeed", "config_file": "ds_z3_config.json"}},
     {"distributed": "deepspeed", "deepspeed": "ds_z3_config.json"}),
])
def test_each_v1_setting_has_its_tunesmith_meaning(v1_folder, changes, expected):
    cfg = load_config(v1_yaml(v1_folder, **changes))
    assert {key: getattr(cfg, key) for key in expected} == expected


def test_a_dataset_yaml_of_pairs_trains_dpo_and_one_sized_dataset_is_cut(v1_folder):
    (v1_folder / "data" / "dpo.yaml").write_text("orca:\n  path: org/orca_dpo_pairs\n  split: train_prefs\n"
                                                 "  converter: pair\n  size: 50\n")
    cfg = load_config(v1_yaml(v1_folder, train_dataset="data/dpo.yaml"))
    assert (cfg.dataset, cfg.stage, cfg.max_samples) == ("org/orca_dpo_pairs:train_prefs", "dpo", 50)


@pytest.mark.parametrize("changes, message", [
    ({"optim_config": {"name": "muon"}}, r"train_v1\.yaml:\d+: optim_config muon: tunesmith's optimizer"),
    ({"cp_size": 2}, r"cp_size 2: tunesmith parallelises by data only"),
    ({"model_class": "cls"}, r"model_class cls: .* a reward model is stage=rm"),
    ({"peft_config": {"name": "lora", "export_dir": "merged"}}, r"'export_dir' .* `tunesmith export RUN_DIR"),
    ({"peft_config": {"name": "oft"}}, r"peft_config oft: tunesmith has lora and freeze"),
    ({"global_batch_size": 3, "micro_batch_size": 2}, r"global_batch_size 3 must be a multiple of micro_batch_size"),
    ({"pref_loss": "simpo"}, r"pref_loss simpo"),
    ({"ulysses_degree": 2}, r"LLaMA-Factory v1 key 'ulysses_degree' has no tunesmith counterpart"),
    ({"train_dataset": "data/missing.yaml"}, r"dataset list data/missing\.yaml not found"),
])
def test_what_v1_cannot_honour_is_refused_by_name(v1_folder, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(v1_yaml(v1_folder, **changes))


def test_v1_rows_read_as_published(tmp_path):
    """v1's own rows: messages whose content is a list of {type, value} parts, and chosen_messages /
    rejected_messages; an image part is refused rather than dropped from what the model sees."""
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [v1_message("user", "Q"), v1_message("assistant", "A")]}])
    [conv] = to_canonical(read_rows(str(sft)))
    assert conv == Conversation([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], None,
                                f"{sft}:1")
    prompt = [v1_message("system", "Be brief."), v1_message("user", "Q")]
    pair = {"chosen_messages": [*prompt, v1_message("assistant", "good")],
            "rejected_messages": [*prompt, v1_message("assistant", "bad")]}
    dpo = write_jsonl(tmp_path / "dpo.jsonl", [pair])
    assert to_canonical(read_rows(str(dpo))) == [
        Preference([{"role": "user", "content": "Q"}], "good", "bad", "Be brief.", f"{dpo}:1")]
    picture = {"role": "user", "content": [{"type": "image_url", "value": "1.jpg"}, {"type": "text", "value": "Who?"}]}
    image = write_jsonl(tmp_path / "mm.jsonl", [{"messages": [picture, v1_message("assistant", "Kane.")]}])
    with pytest.raises(DataError, match=r"mm\.jsonl:1: turn 1 has image_url content: tunesmith trains on text"):
        to_canonical(read_rows(str(image)))


def test_tunesmith_train_runs_a_v1_config(v1_folder, tiny_model_dir):
    path = v1_yaml(v1_folder, model=str(tiny_model_dir), max_steps=2, output_dir=str(v1_folder / "run"),
                   cutoff_len=128)
    result = run_cli("train", str(path), "dtype=fp32", "template=chatml", cwd=v1_folder)
    assert result.returncode == 0, result.stderr
    assert "read as a LLaMA-Factory v1 config" in result.stderr
    saved = yaml.safe_load((v1_folder / "run" / "config.yaml").read_text())
    assert saved["method"] == "lora" and saved["dataset"] == ["data/faq.json", "data/v1.jsonl"]


def test_an_answer_with_zero_loss_weight_is_context_not_learnt(tmp_path, tokenizer):
    from tunesmith.data.dataset import encode_conversation
    from tunesmith.data.templates import get_template

    turns = [v1_message("user", "Q1"), {**v1_message("assistant", "A1"), "loss_weight": 0.0},
             v1_message("user", "Q2"), v1_message("assistant", "A2")]
    [conv] = to_canonical(read_rows(str(write_jsonl(tmp_path / "d.jsonl", [{"messages": turns}]))))
    assert conv.messages[1] == {"role": "assistant", "content": "A1", "train": False}
    for name in ("chatml", "auto"):
        example = encode_conversation(conv, get_template(name, tokenizer), tokenizer, 512)
        trained = tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != -100])
        assert "A2" in trained and "A1" not in trained and "Q" not in trained
    turns[3]["loss_weight"] = 0
    with pytest.raises(DataError, match=r"d2\.jsonl:1: every answer has loss_weight 0: nothing to learn"):
        to_canonical(read_rows(str(write_jsonl(tmp_path / "d2.jsonl", [{"messages": turns}]))))
