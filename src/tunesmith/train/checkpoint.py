"""Checkpoints that are either complete or invisible.

A checkpoint is written into `checkpoints/.tmp-step-N/` and renamed to `checkpoints/step-N/` only after every file
is on disk; a crash mid-write leaves a `.tmp-*` folder that resume ignores (and the next save removes). It holds
the trained tensors (plus the peft adapter files for LoRA/DoRA), optimizer, scheduler, RNG states and the trainer
state (step = data position, early-stopping counters): everything needed to continue bit-for-bit.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tunesmith.errors import ConfigError
from tunesmith.model.adapters import load_trainable_state, trainable_state

STATE_FILE = "trainer_state.json"
TRAINABLE_FILE = "trainable.safetensors"  # exactly the trained tensors, whatever the method


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def save_checkpoint(output_dir: str | Path, step: int, model, optimizer, scheduler, state: dict[str, Any],
                    keep: int = 0) -> Path:
    root = checkpoint_root(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp, final = root / f".tmp-step-{step}", root / f"step-{step}"
    tmp.mkdir()
    save_file(trainable_state(model), tmp / TRAINABLE_FILE)
    if hasattr(model, "peft_config"):  # adapters are small: keep a loadable copy too (for chat/eval of a checkpoint)
        model.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep:
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    root = checkpoint_root(output_dir)
    if not root.exists():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_resume_checkpoint(output_dir: str | Path, resume: bool | str) -> Path | None:
    if resume is False or resume == "":
        return None
    if isinstance(resume, str) and resume.lower() not in ("true", "latest"):
        path = Path(resume)
        if not (path / STATE_FILE).exists():
            raise ConfigError(f"config: resume={resume} is not a complete checkpoint folder (no {STATE_FILE})")
        return path
    found = list_checkpoints(output_dir)
    if not found:
        raise ConfigError(f"config: resume=true but {checkpoint_root(output_dir)} has no checkpoint; "
                          "drop resume or set save_steps so the run writes checkpoints")
    return found[-1]


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    load_trainable_state(model, load_file(path / TRAINABLE_FILE))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / STATE_FILE).read_text())
