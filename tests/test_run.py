"""The run directory never lies: a killed re-run is not loaded as finished, and every checkpoint loads like a run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli
from tunesmith.config import load_config
from tunesmith.run import clear_results, read_log, rewrite_log


def _train_args(model, data, out, *extra):
    return ["train", f"model={model}", f"dataset={data}", f"output_dir={out}", "gradient_accumulation_steps=1",
            "cutoff_len=64", *extra]


def test_a_killed_overwrite_run_is_not_exported_or_chatted(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*_train_args(tiny_model_dir, alpaca_file, out, "max_steps=2")).returncode == 0
    old_adapter = (out / "adapter_model.safetensors").read_bytes()
    # Train again into the same folder with other settings, and kill it once it is under way.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", *_train_args(
        tiny_model_dir, alpaca_file, out, "max_steps=100000", "learning_rate=1e-3", "overwrite_output_dir=true")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(r.get("max_steps") == 100000 and "loss" in r for r in read_log(out)) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_config(out / "config.yaml").learning_rate == 1e-3  # the new settings beside ...
    assert not (out / "adapter_model.safetensors").exists() or (
        (out / "adapter_model.safetensors").read_bytes() != old_adapter)  # ... never the old weights
    for verb in (["export", str(out), "--out", str(tmp_path / "export")], ["chat", str(out), "--prompt", "hi"]):
        result = run_cli(*verb)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {out}: this run did not finish") and "resume=true" in line
    assert not (tmp_path / "export" / "model.safetensors").exists()


@pytest.mark.parametrize("method", ["freeze", "full"])
def test_every_checkpoint_chats_and_exports_like_a_run(tiny_model_dir, alpaca_file, tmp_path, method):
    out = tmp_path / method
    result = run_cli(*_train_args(tiny_model_dir, alpaca_file, out, f"method={method}", "freeze_layers=1",
                                  "max_steps=4", "save_steps=2"))
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = out / "checkpoints" / "step-2"
    chat = run_cli("chat", str(checkpoint), "--prompt", "What are the support hours?", "--max-new-tokens", "4",
                   "--temperature", "0")
    assert chat.returncode == 0, chat.stderr[-2000:]
    exported = run_cli("export", str(checkpoint), "--out", str(tmp_path / f"{method}-export"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (tmp_path / f"{method}-export" / "model.safetensors").exists()


def test_clear_results_removes_an_earlier_runs_files_only(tmp_path):
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "trainer_log.jsonl",
                 "loss.png", "README.md", "model-00001-of-00002.safetensors"):
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoints" / "step-2").mkdir(parents=True)
    (tmp_path / "my_notes.txt").write_text("mine")
    clear_results(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt"]


def test_log_rewrite_is_atomic_and_strict(tmp_path):
    (tmp_path / "trainer_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_log(tmp_path) == [{"step": 1, "loss": 2.0}]  # a torn last line is skipped
    rewrite_log(tmp_path, [{"step": 1, "loss": 2.0}])
    assert json.loads((tmp_path / "trainer_log.jsonl").read_text()) == {"step": 1, "loss": 2.0}
    with pytest.raises(ValueError):
        rewrite_log(tmp_path, [{"loss": float("nan")}])
    assert read_log(tmp_path) == [{"step": 1, "loss": 2.0}]  # a failed rewrite leaves the old log
