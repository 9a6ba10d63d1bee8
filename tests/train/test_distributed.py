"""Many processes on the CPU (gloo), started by tunesmith's own launcher: the same rows, losses and weights as one
process with the same global batch; faults end the job; resume and two "machines" on localhost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_cli

# fp32: the comparisons below are exact to 1e-5; bf16 (the default on CPUs that have it) rounds differently when
# rows are grouped differently.
STEPS = ["max_steps=3", "gradient_accumulation_steps=1", "val_size=4", "learning_rate=1e-2", "lr_scheduler=constant",
         "dtype=fp32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(tiny_model_dir, data, out, *extra, env=None):
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={out}", *STEPS, *extra,
                     env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(out) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "trainer_log.jsonl").read_text().splitlines()) if "loss" in r]


def weights(out) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (out / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(out / name)


def assert_same_run(a, b):
    assert losses(a) == pytest.approx(losses(b), abs=1e-5)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa) < 1e-5


@pytest.mark.parametrize("strategy, method", [("ddp", "lora"), ("fsdp", "lora"), ("fsdp", "full")])
def test_two_processes_equal_one_with_the_same_global_batch(strategy, method, tiny_model_dir, alpaca_file, tmp_path):
    # Full fine-tuning with SGD: AdamW turns the last-bit differences of a reduce in another order into whole
    # lr-sized steps wherever a gradient is ~0, which says nothing about the sharding.
    extra = [f"method={method}", *(["optimizer=sgd", "learning_rate=0.5"] if method == "full" else [])]
    train(tiny_model_dir, alpaca_file, tmp_path / "one", "per_device_batch_size=4", *extra)
    two = train(tiny_model_dir, alpaca_file, tmp_path / "two", "per_device_batch_size=2", *extra,
                "nproc=2", f"distributed={strategy}", f"master_port={free_port()}")
    assert_same_run(tmp_path / "one", tmp_path / "two")
    assert f"4 rows (2 per process x 1 accumulation x 2 processes, {strategy})" in two.stderr  # printed once, by the main process
    assert two.stderr.count("trainable of") == 1
    done = json.loads((tmp_path / "two" / "trainer_log.jsonl").read_text().splitlines()[-1])
    assert done["processes"] == 2


def test_uneven_steps_finish_and_match(tiny_model_dir, alpaca_file, tmp_path):
    """19 training rows, 6 per step (3 per process): steps of 6, 6, 6 and then 1 row, where one process has no row
    at all and still takes part; 9 steps also cross into the second epoch (3 rows split 2/1 there)."""
    args = ["val_size=5", "max_steps=9", "optimizer=sgd", "learning_rate=0.5"]  # SGD: see the test above
    train(tiny_model_dir, alpaca_file, tmp_path / "one", *args, "per_device_batch_size=6")
    train(tiny_model_dir, alpaca_file, tmp_path / "two", *args, "per_device_batch_size=3", "nproc=2",
          f"master_port={free_port()}")
    assert len(losses(tmp_path / "two")) == 9
    assert_same_run(tmp_path / "one", tmp_path / "two")


@pytest.mark.parametrize("stage", ["rm", "dpo"])
def test_preference_stages_under_both_strategies(stage, tiny_model_dir, tmp_path):
    from tests.conftest import write_jsonl

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"Question {i}?", "chosen": "Yes, gladly.",
                                                    "rejected": "No."} for i in range(20)])
    sgd = ["optimizer=sgd", "learning_rate=0.5"]  # see the first test
    train(tiny_model_dir, pairs, tmp_path / "one", f"stage={stage}", "per_device_batch_size=4", *sgd)
    train(tiny_model_dir, pairs, tmp_path / "two", f"stage={stage}", "per_device_batch_size=2", "nproc=2", *sgd,
          "distributed=fsdp" if stage == "dpo" else "distributed=ddp", f"master_port={free_port()}")
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_resume_under_two_processes_equals_an_uninterrupted_run(tiny_model_dir, alpaca_file, tmp_path):
    args = ["per_device_batch_size=2", "max_steps=4", "save_steps=2", "nproc=2", "distributed=fsdp",
            "lora_dropout=0.1"]
    train(tiny_model_dir, alpaca_file, tmp_path / "straight", *args, f"master_port={free_port()}")
    out = tmp_path / "resumed"
    train(tiny_model_dir, alpaca_file, out, *args, f"master_port={free_port()}")
    train(tiny_model_dir, alpaca_file, out, *args, "resume=true", f"master_port={free_port()}")
    assert_same_run(tmp_path / "straight", out)


def test_an_error_on_one_process_ends_the_job_with_one_line(tiny_model_dir, alpaca_file, tmp_path):
    """sitecustomize makes process 1 fail at its second step; the launcher stops process 0 and prints one line."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import tunesmith.train.loop as loop\n"
        "    original = loop._Trainer.train_step\n"
        "    def failing(self, step, window):\n"
        "        if step == 1:\n"
        "            raise RuntimeError('injected failure on this process only')\n"
        "        return original(self, step, window)\n"
        "    loop._Trainer.train_step = failing\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hook), str(ROOT / "src")])}
    started = time.time()
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={tmp_path / 'r'}",
                     *STEPS, "max_steps=1000", "per_device_batch_size=2", "nproc=2", f"master_port={free_port()}",
                     env=env, timeout=120)
    assert result.returncode != 0
    assert time.time() - started < 60  # no collective timeout to wait out (generous: includes two process starts)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: process 1: RuntimeError: injected failure on this process only"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_two_machines_on_localhost_equal_one_machine_with_two_processes(tiny_model_dir, alpaca_file, tmp_path):
    train(tiny_model_dir, alpaca_file, tmp_path / "one", "per_device_batch_size=2", "nproc=2",
          f"master_port={free_port()}")
    port, out = free_port(), tmp_path / "two"
    args = [sys.executable, "-m", "tunesmith", "train", f"model={tiny_model_dir}", f"dataset={alpaca_file}",
            f"output_dir={out}", *STEPS, "per_device_batch_size=2", "nnodes=2", f"master_port={port}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    machines = [subprocess.Popen([*args, f"node_rank={r}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    results = [(m.wait(timeout=300), *m.communicate()) for m in machines]
    assert all(rc == 0 for rc, _, _ in results), [err[-2000:] for _, _, err in results]
    assert_same_run(tmp_path / "one", out)


def test_deepspeed_presets_translate_and_refuse_cleanly(tiny_model_dir, alpaca_file, tmp_path):
    from tunesmith.config import load_config
    from tunesmith.train.parallel import deepspeed_config

    cfg = load_config(None, ["dataset=x", "per_device_batch_size=3", "gradient_accumulation_steps=5",
                             "max_grad_norm=0.5"])
    zero3 = deepspeed_config("zero3_offload", cfg)
    assert zero3["zero_optimization"]["stage"] == 3 and zero3["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert (zero3["train_micro_batch_size_per_gpu"], zero3["gradient_accumulation_steps"],
            zero3["gradient_clipping"]) == (3, 5, 0.5)
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 7}')
    assert deepspeed_config(str(tmp_path / "ds.json"), cfg)["gradient_accumulation_steps"] == 7
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={tmp_path / 'r'}",
                     "distributed=deepspeed", "max_steps=1")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "pip install 'tunesmith[deepspeed]'" in line or "needs CUDA GPUs" in line, line


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_torchrun_and_accelerate_launch_run_the_same_job(launcher, tiny_model_dir, alpaca_file, tmp_path):
    train(tiny_model_dir, alpaca_file, tmp_path / "one", "per_device_batch_size=4")
    port = str(free_port())
    command = {"torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_port", port],
               "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                              "2", "--main_process_port", port]}[launcher]
    out = tmp_path / launcher
    result = subprocess.run([*command, "-m", "tunesmith", "train", f"model={tiny_model_dir}", f"dataset={alpaca_file}",
                             f"output_dir={out}", *STEPS, "per_device_batch_size=2"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(tmp_path / "one", out)
