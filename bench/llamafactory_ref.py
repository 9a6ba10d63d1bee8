"""The CPU reference for bench/train_throughput.py: LLaMA-Factory 0.9.5 in its own venv (it pins its own torch,
torchvision and torchaudio, which must not touch tunesmith's environment), run with its defaults on the same model,
rows and hyper-parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

VERSION = "0.9.5"
VENV = Path(os.environ.get("TUNESMITH_BENCH_CACHE", Path.home() / ".cache" / "tunesmith" / "bench")) / "lf-venv"
# LLaMA-Factory needs torchvision and torchaudio; from PyPI the pair that installs together is torch 2.9.1.
INSTALL = [["torch==2.9.1", "torchvision==0.24.1"], ["torch==2.9.1", "torchaudio==2.9.*"],
           [f"llamafactory=={VERSION}"]]


def ensure_venv() -> Path:
    """Create the venv once (about 8 GB, a few minutes); later runs reuse it."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", f"import llamafactory; assert llamafactory.__version__ == '{VERSION}'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing LLaMA-Factory {VERSION} into {VENV} (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    for packages in INSTALL:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    subprocess.run(check, check=True)
    return python


def version_of(python: Path, module: str) -> str:
    out = subprocess.run([str(python), "-c", f"import {module}; print({module}.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "?"


def write_config(work: Path, model: Path, rows_file: Path, hp: dict, bf16: bool = False, name: str = "lf") -> Path:
    """A LLaMA-Factory YAML: its defaults (gradient checkpointing, padded micro-batches, full-vocabulary logits),
    with the benchmark's shared hyper-parameters and file order, so both tools see the same rows in each step.
    `bf16`: HF Trainer's bf16 mixed precision (autocast), LLaMA-Factory at its best on a CPU with fast bf16."""
    data_dir = work / "lf_data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "dataset_info.json").write_text(json.dumps({"bench": {"file_name": str(rows_file.resolve())}}))
    lines = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": "true", "finetuning_type": "lora",
        "lora_rank": hp["lora_rank"], "lora_alpha": hp["lora_alpha"], "lora_dropout": 0.0, "lora_target": "all",
        "dataset": "bench", "dataset_dir": str(data_dir), "template": "alpaca", "cutoff_len": hp["cutoff_len"],
        "overwrite_cache": "true", "output_dir": str(work / f"{name}_out"), "overwrite_output_dir": "true",
        "logging_steps": 1, "save_strategy": "'no'", "report_to": "none", "plot_loss": "false",
        "per_device_train_batch_size": hp["micro_batch"], "gradient_accumulation_steps": hp["accumulation"],
        "max_steps": hp["steps"], "learning_rate": hp["learning_rate"], "lr_scheduler_type": "constant",
        "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0, "seed": hp["seed"],
        "disable_shuffling": "true", "bf16": "true" if bf16 else "false", "fp16": "false",
        "dataloader_num_workers": 0,
    }
    if bf16:  # HF Trainer refuses bf16 without a GPU unless told the CPU is meant (it autocasts there too)
        lines["use_cpu"] = "true"
    path = work / f"{name}_config.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def run(python: Path, config: Path, work: Path, env: dict | None = None) -> dict:
    """Train once; returns samples/s (HF Trainer's own train_samples_per_second), step losses and peak RSS. `env`:
    extra environment variables."""
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONWARNINGS": "ignore", **(env or {})}
    log = (work / "lf_stdout.log").open("w")
    started = time.time()
    proc = subprocess.Popen([str(python), "-m", "llamafactory.cli", "train", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    log.close()
    if status != 0:
        tail = (work / "lf_stdout.log").read_text()[-3000:]
        raise SystemExit(f"LLaMA-Factory failed (exit {status}):\n{tail}")
    out = work / config.name.replace("_config.yaml", "_out")
    results = json.loads((out / "train_results.json").read_text())
    steps = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if "loss" in s]
    return {"samples_per_s": results["train_samples_per_second"], "seconds": results["train_runtime"],
            "losses": losses, "peak_rss_gib": usage.ru_maxrss / 2**20, "wall_s": time.time() - started}
