"""Checkpoint + resume continues exactly where an uninterrupted run would be."""

import json

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.train.checkpoint import list_checkpoints, save_checkpoint
from tunesmith.train.loop import train


def cfg(tiny_model_dir, data, out, *extra):
    return load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={out}", "max_steps=6",
                              "per_device_batch_size=2", "gradient_accumulation_steps=2", "learning_rate=5e-3",
                              "lora_dropout=0.1", "save_steps=3", "warmup_steps=2", "lr_scheduler=linear",
                              "logging_steps=1", *extra])


def test_resume_reproduces_uninterrupted_losses(tiny_model_dir, alpaca_file, tmp_path):
    straight = train(cfg(tiny_model_dir, alpaca_file, tmp_path / "a"), show_progress=False)
    interrupted = train(cfg(tiny_model_dir, alpaca_file, tmp_path / "b"))
    assert interrupted.losses == pytest.approx(straight.losses, rel=1e-6)  # same seed, same run
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step-3"]
    resumed = train(cfg(tiny_model_dir, alpaca_file, tmp_path / "b", "resume=true"))
    assert resumed.losses == pytest.approx(straight.losses[3:], rel=1e-5)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "trainer_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6, 6]  # the interrupted run's later lines were replaced, not duplicated


def test_half_written_checkpoint_is_ignored(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    train(cfg(tiny_model_dir, alpaca_file, out))
    (out / "checkpoints" / ".tmp-step-5").mkdir()  # a crash mid-write leaves only this
    (out / "checkpoints" / "step-9").mkdir()  # a folder without trainer_state.json is not a checkpoint
    assert [p.name for p in list_checkpoints(out)] == ["step-3"]


def test_existing_run_needs_resume_or_overwrite(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=0", "max_steps=1"))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=0", "max_steps=1"))
    with pytest.raises(ConfigError, match="has no checkpoint"):
        train(cfg(tiny_model_dir, alpaca_file, out, "resume=true"))
    train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=0", "max_steps=1", "overwrite_output_dir=true"))


def test_save_total_limit_keeps_newest(tmp_path):
    class Dummy:
        def named_parameters(self):
            return iter([("w", torch.nn.Parameter(torch.ones(2)))])

        def state_dict(self):
            return {}

    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, Dummy(), Dummy(), Dummy(), {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]
