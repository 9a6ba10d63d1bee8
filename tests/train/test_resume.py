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
    with pytest.raises(ConfigError, match="already holds a finished run; set overwrite_output_dir=true"):
        train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=0", "max_steps=1"))
    with pytest.raises(ConfigError, match="finished and wrote no checkpoint .*set overwrite_output_dir=true"):
        train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=0", "max_steps=1", "resume=true"))
    train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=0", "max_steps=1", "overwrite_output_dir=true"))


def test_save_total_limit_keeps_newest(tmp_path):
    class Scheduler:
        def state_dict(self):
            return {}

    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"w": torch.ones(2)}, {}, Scheduler(), {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]


def test_resume_with_a_changed_learning_rate_refuses(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    train(cfg(tiny_model_dir, alpaca_file, out), show_progress=False)
    with pytest.raises(ConfigError, match=r"learning_rate=0\.001 differs from the checkpoint's learning_rate=0\.005"):
        train(cfg(tiny_model_dir, alpaca_file, out, "resume=true", "learning_rate=1e-3"))
    # Where and how often things are written may change.
    train(cfg(tiny_model_dir, alpaca_file, out, "resume=true", "logging_steps=2", "save_steps=0"), show_progress=False)


@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(tiny_model_dir, alpaca_file, tmp_path, caplog,
                                                                method):
    straight = train(cfg(tiny_model_dir, alpaca_file, tmp_path / "a", "save_steps=2", f"method={method}",
                         "freeze_layers=1"), show_progress=False)
    out = tmp_path / "b"
    train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=2", f"method={method}", "freeze_layers=1"),
          show_progress=False)
    optimizer = out / "checkpoints" / "step-4" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # a kill (or full disk) mid-write of an old-style save
    with (out / "trainer_log.jsonl").open("a") as fh:
        fh.write('{"step": 5, "loss": 0.')  # and a torn last log line
    resumed = train(cfg(tiny_model_dir, alpaca_file, out, "save_steps=2", f"method={method}", "freeze_layers=1",
                        "resume=true"), show_progress=False)
    assert "step-4 is damaged" in caplog.text and "resuming from" in caplog.text and "step-2" in caplog.text
    assert resumed.losses == pytest.approx(straight.losses[2:], rel=1e-5)
    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]  # strict JSON
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_resume_reuses_the_checkpoints_memory_plan(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    train(cfg(tiny_model_dir, alpaca_file, out), show_progress=False)
    state_file = out / "checkpoints" / "step-3" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert set(state["memory_plan"]) >= {"token_budget", "checkpointing"}
    state["memory_plan"]["token_budget"] = 123  # what the interrupted run planned on its machine
    state_file.write_text(json.dumps(state))
    train(cfg(tiny_model_dir, alpaca_file, out, "resume=true"), show_progress=False)
    done = json.loads((out / "trainer_log.jsonl").read_text().splitlines()[-1])
    assert done["micro_batch_tokens"] == 123


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Payload.marker),))


def test_checkpoint_files_are_never_unpickled_as_code(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    train(cfg(tiny_model_dir, alpaca_file, out), show_progress=False)
    _Payload.marker = str(tmp_path / "pwned")
    torch.save({"state": _Payload()}, out / "checkpoints" / "step-3" / "rng.pt")
    with pytest.raises(Exception, match="damaged"):
        train(cfg(tiny_model_dir, alpaca_file, out, "resume=true"), show_progress=False)
    assert not (tmp_path / "pwned").exists()
