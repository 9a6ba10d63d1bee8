"""A LLaMA-Factory training YAML, with dataset names from its dataset_info.json, trains as it is: every key is
translated, dropped with its reason said, or refused by name and line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import QA, run_cli
from tunesmith.config import load_config
from tunesmith.errors import ConfigError, TunesmithError

# The shape of LLaMA-Factory's examples/train_lora/*_lora_sft.yaml (written here, not copied).
LF_SFT = {
    "model_name_or_path": "org/some-model", "trust_remote_code": True,
    "stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_rank": 8, "lora_target": "all",
    "dataset": "faq,faq_chat", "template": "llama3", "cutoff_len": 512, "max_samples": 100,
    "overwrite_cache": True, "preprocessing_num_workers": 16, "dataloader_num_workers": 4,
    "output_dir": "saves/lora/sft", "logging_steps": 10, "save_steps": 500, "plot_loss": True,
    "overwrite_output_dir": True, "save_only_model": False, "report_to": "none",
    "per_device_train_batch_size": 1, "gradient_accumulation_steps": 8, "learning_rate": 1.0e-4,
    "num_train_epochs": 3.0, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "bf16": True, "ddp_timeout": 180000000,
    "resume_from_checkpoint": None,
}
INFO = {
    "faq": {"file_name": "faq.json"},
    "faq_chat": {"file_name": "faq.json", "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
    "orca": {"hf_hub_url": "Open-Orca/OpenOrca", "ms_hub_url": "AI-ModelScope/OpenOrca",
             "columns": {"prompt": "question", "response": "response", "system": "system_prompt"}},
    "chat": {"hf_hub_url": "org/chat", "split": "train_sft", "formatting": "sharegpt", "columns": {"messages": "msgs"},
             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
    "pairs": {"file_name": "pairs.json", "ranking": True, "formatting": "sharegpt",
              "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
    "docs": {"file_name": "docs.jsonl", "columns": {"prompt": "body"}},
    "toolcalls": {"file_name": "faq.json", "formatting": "sharegpt", "columns": {"messages": "conversations",
                                                                                 "tools": "tools"}},
    "modelscope_only": {"ms_hub_url": "x/y"},
}


@pytest.fixture
def lf_folder(tmp_path, monkeypatch):
    """A LLaMA-Factory checkout's layout: data/dataset_info.json and its files; the tests run from its root."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps(INFO), encoding="utf-8")
    (data / "faq.json").write_text(json.dumps([{"instruction": q, "input": "", "output": a} for q, a in QA * 4]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lf_yaml(folder: Path, **changes) -> Path:
    config = {**LF_SFT, **changes}
    path = folder / "llama3_lora_sft.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not ...}, sort_keys=False))
    return path


def test_a_llamafactory_sft_config_becomes_tunesmiths(lf_folder, caplog):
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        cfg = load_config(lf_yaml(lf_folder))
    assert (cfg.model, cfg.stage, cfg.method, cfg.lora_rank, cfg.lora_target) == ("org/some-model", "sft", "lora", 8,
                                                                                    "all-linear")
    assert cfg.dataset == ["data/faq.json", "data/faq.json"] and cfg.columns == {} and cfg.dataset_format == "auto"
    assert (cfg.per_device_batch_size, cfg.gradient_accumulation_steps, cfg.num_epochs) == (1, 8, 3.0)
    assert (cfg.lr_scheduler, cfg.warmup_ratio, cfg.learning_rate, cfg.dtype) == ("cosine", 0.1, 1e-4, "bf16")
    assert (cfg.template, cfg.cutoff_len, cfg.max_samples, cfg.output_dir) == ("llama3", 512, 100, "saves/lora/sft")
    [said] = [r.getMessage() for r in caplog.records if "LLaMA-Factory" in r.getMessage()]
    for dropped in ("plot_loss", "report_to", "preprocessing_num_workers", "ddp_timeout", "trust_remote_code"):
        assert dropped in said
    assert "max_samples counts the datasets together here" in said
    assert "LLaMA-Factory's defaults for keys it leaves out: lora_alpha=16" in said and cfg.lora_alpha == 16


@pytest.mark.parametrize("changes, expected", [
    ({"lora_rank": ..., "cutoff_len": ..., "learning_rate": ..., "lr_scheduler_type": ...},  # left out: as there
     {"lora_rank": 8, "lora_alpha": 16, "cutoff_len": 2048, "learning_rate": 5e-5, "lr_scheduler": "linear"}),
    ({"lora_rank": 32}, {"lora_alpha": 64}),
    ({"lora_rank": 32, "lora_alpha": 8}, {"lora_alpha": 8}),
    ({"quantization_bit": 4}, {"method": "qlora", "quantization_bit": 4}),
    ({"use_dora": True}, {"method": "dora"}),
    ({"finetuning_type": "freeze", "freeze_trainable_layers": 3}, {"method": "freeze", "freeze_layers": 3}),
    ({"finetuning_type": "full", "bf16": False, "pure_bf16": True}, {"method": "full", "dtype": "pure_bf16"}),
    ({"stage": "dpo", "pref_beta": 0.2, "pref_loss": "sigmoid", "dataset": "pairs"},
     {"beta": 0.2, "dataset": "data/pairs.json", "dataset_format": "preference"}),
    ({"stage": "dpo", "pref_loss": "orpo", "pref_beta": 0.05, "dataset": "pairs"}, {"stage": "orpo", "beta": 0.05}),
    ({"stage": "pt", "dataset": "docs"}, {"dataset": "data/docs.jsonl", "columns": {"text": "body"}}),
    ({"dataset": "orca"}, {"dataset": "Open-Orca/OpenOrca",
                           "columns": {"instruction": "question", "output": "response", "system": "system_prompt"}}),
    ({"dataset": "chat"}, {"dataset": "org/chat:train_sft", "dataset_format": "openai", "columns": {"messages": "msgs"}}),
    ({"dataset": "my/own.jsonl"}, {"dataset": "my/own.jsonl"}),
    ({"optim": "adamw_torch", "max_steps": -1, "template": "qwen"}, {"optimizer": "adamw", "max_steps": 0,
                                                                     "template": "auto"}),
    ({"deepspeed": "examples/deepspeed/ds_z3_config.json"}, {"distributed": "deepspeed"}),
    ({"resume_from_checkpoint": "saves/lora/sft/checkpoint-500"}, {"resume": "saves/lora/sft/checkpoint-500"}),
    ({"eval_dataset": "faq", "eval_steps": 50}, {"val_dataset": "data/faq.json", "eval_steps": 50}),
])
def test_each_llamafactory_setting_has_its_tunesmith_meaning(lf_folder, changes, expected):
    cfg = load_config(lf_yaml(lf_folder, **changes))
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_overrides_apply_on_top_and_the_data_folder_may_sit_beside_the_config(lf_folder, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # dataset_dir "data" is not here, but next to the config
    cfg = load_config(lf_yaml(lf_folder), ["model=other/model", "max_steps=5"])
    assert cfg.model == "other/model" and cfg.max_steps == 5 and cfg.dataset == [str(lf_folder / "data/faq.json")] * 2
    cfg = load_config(lf_yaml(lf_folder), ["num_train_epochs=1", "per_device_train_batch_size=2"])  # its own names
    assert (cfg.num_epochs, cfg.per_device_batch_size) == (1.0, 2)


@pytest.mark.parametrize("changes, message", [
    ({"stage": "kto"}, ":3: stage kto is LLaMA-Factory's"),
    ({"ray_num_workers": 4}, ":31: LLaMA-Factory key 'ray_num_workers' has no tunesmith counterpart"),
    ({"image_max_pixels": 262144}, ":31: image_max_pixels: tunesmith trains on text"),
    ({"do_train": False}, ":4: do_train: false"),
    ({"finetuning_type": "oft"}, "finetuning_type oft"),
    ({"pref_loss": "simpo"}, "pref_loss simpo: tunesmith's dpo uses the sigmoid"),
    ({"quantization_method": "hqq", "quantization_bit": 4}, "quantization_method hqq"),
    ({"lr_scheduler_type": "polynomial"}, "lr_scheduler_type polynomial"),
    ({"dataset": "toolcalls"}, "'toolcalls' has a 'tools' column"),
    ({"dataset": "modelscope_only"}, "'modelscope_only' uses ms_hub_url"),
    ({"dataset": "nosuch"}, "dataset 'nosuch' is not in"),
    ({"dataset": "faq,orca"}, "differ in format or columns"),
    ({"hub_token": "hf_x"}, "secrets never go in a config"),
    ({"dataset": [1, 2]}, "dataset must be names separated by commas"),
])
def test_what_cannot_be_honoured_is_refused_by_name(lf_folder, changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(lf_yaml(lf_folder, **changes))


def test_a_llamafactory_dataset_name_given_as_dataset_says_which_file(lf_folder):
    from tunesmith.data.sources import read_rows

    with pytest.raises(TunesmithError, match=r"^faq: file not found; 'faq' is a LLaMA-Factory dataset name "
                                             r"\(data/dataset_info.json\): give dataset=data/faq.json"):
        read_rows("faq")


def test_a_dataset_name_without_dataset_info_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no data/dataset_info.json was found"):
        load_config(lf_yaml(tmp_path))


def test_warmup_ratio_warms_up_that_share_of_the_steps():
    import torch

    from tunesmith.config import TrainConfig
    from tunesmith.train.optim import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = TrainConfig(dataset="x", warmup_ratio=0.1, lr_scheduler="constant_with_warmup")
    scheduler = build_scheduler(optimizer, cfg, 40)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]  # ceil(0.1 x 40) = 4 warmup steps
    with pytest.raises(ConfigError, match="warmup_ratio"):
        TrainConfig(dataset="x", warmup_ratio=1.5).validate()


def test_tunesmith_train_runs_a_llamafactory_config(lf_folder, tiny_model_dir):
    path = lf_yaml(lf_folder, model_name_or_path=str(tiny_model_dir), template="chatml", max_steps=2,
                   output_dir=str(lf_folder / "run"), cutoff_len=128)
    result = run_cli("train", str(path), "dtype=fp32", cwd=lf_folder)
    assert result.returncode == 0, result.stderr
    assert "read as a LLaMA-Factory config" in result.stderr
    saved = yaml.safe_load((lf_folder / "run" / "config.yaml").read_text())  # tunesmith's own keys: re-runnable
    assert saved["method"] == "lora" and saved["lora_target"] == "all-linear" and saved["warmup_ratio"] == 0.1
    assert load_config(lf_folder / "run" / "config.yaml").dataset == saved["dataset"]
    # then LLaMA-Factory's inference and merge YAMLs (`llamafactory-cli chat|export`) name that adapter
    (lf_folder / "infer.yaml").write_text(f"model_name_or_path: {tiny_model_dir}\nadapter_name_or_path: run\n"
                                          "template: chatml\ninfer_backend: huggingface\n")
    chat = run_cli("chat", "infer.yaml", "--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "3",
                   cwd=lf_folder)
    assert chat.returncode == 0, chat.stderr  # (a random tiny model may well answer with nothing visible)
    assert "tunesmith chooses infer_backend, template itself" in chat.stderr
    (lf_folder / "merge.yaml").write_text(f"model_name_or_path: {tiny_model_dir}\nadapter_name_or_path: run\n"
                                          "export_dir: merged\nexport_size: 1\nexport_device: cpu\n")
    export = run_cli("export", "merge.yaml", cwd=lf_folder)
    assert export.returncode == 0, export.stderr
    assert (lf_folder / "merged" / "model.safetensors").is_file()


def test_config_files_named_as_models(lf_folder, tmp_path):
    """A LLaMA-Factory inference YAML opens its adapter on its base; a training config opens the run it trains."""
    from tunesmith.run import RunDir

    (tmp_path / "adapter").mkdir()
    (tmp_path / "infer.yaml").write_text(f"model_name_or_path: org/base\nadapter_name_or_path: {tmp_path / 'adapter'}\n")
    run = RunDir.open(str(tmp_path / "infer.yaml"))
    assert run.path == tmp_path / "adapter" and run.base_override == "org/base"
    assert RunDir.open(str(tmp_path / "infer.yaml"), base="other/base").base_override == "other/base"
    (tmp_path / "two.yaml").write_text("model_name_or_path: org/base\nadapter_name_or_path: a,b\n")
    with pytest.raises(ConfigError, match="one adapter folder"):
        RunDir.open(str(tmp_path / "two.yaml"))
    (tmp_path / "saves").mkdir()
    trained = lf_yaml(lf_folder, output_dir=str(tmp_path / "saves"))
    assert RunDir.open(str(trained)).path == tmp_path / "saves"
    with pytest.raises(TunesmithError, match="does not exist yet; train it first"):
        RunDir.open(str(lf_yaml(lf_folder, output_dir=str(tmp_path / "never"))))


def test_merge_yaml_export_keys_become_export_options(tmp_path):
    from tunesmith.llamafactory import export_settings

    (tmp_path / "merge.yaml").write_text("model_name_or_path: m\nadapter_name_or_path: a\nexport_dir: out\n"
                                         "export_size: 2\nexport_quantization_bit: 4\nexport_hub_model_id: me/x\n")
    assert export_settings(tmp_path / "merge.yaml") == {"out": "out", "max_shard_size": "2GB", "bits": 4,
                                                        "push_to_hub": "me/x"}
    assert export_settings(tmp_path / "runs") == {}
