"""Checkpoints that are either complete or invisible, and that load like a finished run.

A checkpoint is written into `checkpoints/.tmp-step-N/` and renamed to `checkpoints/step-N/` only after every file
is on disk; a crash mid-write leaves a `.tmp-*` folder that resume ignores (and the next save removes). It holds:
- the run's result as it would be at this step (`save_result`: the PEFT adapter, or the complete model for
  full/freeze), its tokenizer and `config.yaml`, so chat, serve, eval, score and export load it like a run;
- what resume needs to continue bit for bit: the trained tensors (`trainable.safetensors` for adapters; full/freeze
  read them back from the saved model), optimizer, scheduler, RNG states, and the trainer state (step = data
  position, early-stopping counters, the memory plan).
Everything is loaded with `weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tunesmith.errors import ConfigError, first_line
from tunesmith.run import CHECKPOINTS, CONFIG_FILE, STATE_FILE, RunError, checkpoints, is_finished

log = logging.getLogger(__name__)
TRAINABLE_FILE = "trainable.safetensors"  # the trained tensors of an adapter run (full/freeze: the model files)
RESUME_FILES = ("optimizer.pt", "scheduler.pt", "rng.pt", STATE_FILE)
# Keys that may change on resume without changing what the model learns (where and how often things are written,
# how it is computed). Any other difference stops the resume: it would silently mix two trainings.
RESUMABLE_CHANGES = {"output_dir", "resume", "overwrite_output_dir", "eval_steps", "save_steps", "save_total_limit",
                     "logging_steps", "early_stopping_patience", "load_best", "device", "max_tokens_per_batch",
                     "gradient_checkpointing", "torch_compile", "distributed", "deepspeed", "fsdp_cpu_offload",
                     "nnodes", "node_rank", "master_addr", "master_port",
                     # how rows are split over processes and micro-batches; the rows per step must not change
                     "nproc", "per_device_batch_size", "gradient_accumulation_steps"}


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain numbers only, so they load with weights_only=True."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss], "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                              has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def save_checkpoint(output_dir: str | Path, step: int, trainable: dict | None, optimizer_state: dict, scheduler,
                    state: dict[str, Any], keep: int = 0, save_result: Callable[[Path], None] | None = None,
                    rng_states: list[dict] | None = None) -> Path:
    """Write `checkpoints/step-N` atomically (the main process only; the states are gathered already).
    `trainable`: the trained tensors when the saved result does not hold them (adapters); `save_result(folder)`
    writes the loadable model, tokenizer and config (the same function that writes the finished run);
    `rng_states`: every process's random state, in rank order (dropout differs per process)."""
    root = Path(output_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp, final = root / f".tmp-step-{step}", root / f"step-{step}"
    try:
        tmp.mkdir()
        if save_result is not None:
            save_result(tmp)
        if trainable is not None:
            save_file(trainable, tmp / TRAINABLE_FILE)
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"processes": rng_states or [rng_state()]}, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        _fsync_tree(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        earlier = checkpoints(output_dir)
        fallback = f"; {earlier[-1]} is intact and resume=true continues from it" if earlier else ""
        if e.errno == errno.ENOSPC:
            raise RunError(f"{final}: the disk is full; free space (or lower save_total_limit){fallback}") from None
        raise RunError(f"{final}: could not write the checkpoint ({e.strerror or e}){fallback}") from None
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep:
        for old in checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    return checkpoints(output_dir)


def find_resume_checkpoints(output_dir: str | Path, resume: bool | str) -> list[Path]:
    """The checkpoints to try, best first: the one named, or every checkpoint of the run from the newest (a damaged
    newest one falls back to the one before it)."""
    if resume is False or resume == "":
        return []
    if isinstance(resume, str) and resume.lower() not in ("true", "latest"):
        path = Path(resume)
        if not (path / STATE_FILE).exists():
            raise ConfigError(f"config: resume={resume} is not a complete checkpoint folder (no {STATE_FILE}); "
                              f"use resume=true for the newest checkpoint of output_dir")
        return [path]
    found = checkpoints(output_dir)
    if not found:
        done = "finished and " if is_finished(output_dir) else ""
        raise ConfigError(f"config: resume=true but the run in {output_dir} {done}wrote no checkpoint (checkpoints "
                          "need save_steps > 0); drop resume and set overwrite_output_dir=true to train it again")
    return found[::-1]


def check_same_training(cfg, checkpoint: Path) -> None:
    """A resumed run must learn what the checkpoint's run learned; name the first key that would change that."""
    from tunesmith.config import load_config

    saved_path = checkpoint / CONFIG_FILE
    if not saved_path.exists():
        return
    saved_cfg = load_config(saved_path)
    state = read_state(checkpoint)
    saved_rows = state.get("rows_per_step", saved_cfg.per_device_batch_size * saved_cfg.gradient_accumulation_steps)
    if cfg.rows_per_step != saved_rows:
        raise ConfigError(f"config: {cfg.rows_per_step} rows per step ({cfg.per_device_batch_size} per process x "
                          f"{cfg.gradient_accumulation_steps} accumulation x {cfg.world_size} processes) differs from "
                          f"the checkpoint's {saved_rows}; set per_device_batch_size and gradient_accumulation_steps "
                          "so that the rows per step stay the same")
    saved = saved_cfg.to_dict()
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_CHANGES and saved.get(key) != value:
            raise ConfigError(f"config: {key}={value!r} differs from the checkpoint's {key}={saved.get(key)!r} "
                              f"({saved_path}); a resumed run must train the same way: set it back, or start a new "
                              "run without resume")


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((path / STATE_FILE).read_text())


def load_checkpoint(path: Path, model, optimizer, scheduler, par) -> dict[str, Any]:
    """Restore model tensors, optimizer, scheduler and RNG (`par`: how the model is shared over processes); a
    damaged file raises CheckpointDamaged."""
    try:
        tensors = _trainable_tensors(path, model)
        optimizer_state = torch.load(path / "optimizer.pt", weights_only=True)
        scheduler_state = torch.load(path / "scheduler.pt", weights_only=True)
        rng = torch.load(path / "rng.pt", weights_only=True)
        state = read_state(path)
    except ConfigError:
        raise
    except Exception as e:  # torch, safetensors and json each raise their own types for a truncated file
        first = first_line(e, 120)
        raise CheckpointDamaged(f"{path} is damaged ({first})") from None
    par.load_trainable(model, tensors)
    par.load_optimizer(model, optimizer, optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    processes = rng["processes"]
    if len(processes) != par.world and par.is_main:
        log.warning("%s was written by %d processes, this run has %d: random draws (dropout) will differ from an "
                    "uninterrupted run", path, len(processes), par.world)
    _set_rng_state(processes[par.rank % len(processes)])
    return state


class CheckpointDamaged(Exception):
    pass


def _trainable_tensors(path: Path, model) -> dict[str, torch.Tensor]:
    """The trained tensors: from trainable.safetensors (adapters), else from the saved complete model's shards."""
    files = [path / TRAINABLE_FILE] if (path / TRAINABLE_FILE).exists() else sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no {TRAINABLE_FILE} or model*.safetensors")
    wanted = {name for name, p in model.named_parameters() if p.requires_grad}
    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():
                if file.name == TRAINABLE_FILE or name in wanted:
                    tensors[name] = fh.get_tensor(name)
    return tensors


def resume(candidates: list[Path], model, optimizer, scheduler, par) -> tuple[Path, dict[str, Any]]:
    """Load the first intact checkpoint of `candidates`, saying which damaged ones were skipped."""
    for i, path in enumerate(candidates):
        try:
            return path, load_checkpoint(path, model, optimizer, scheduler, par)
        except CheckpointDamaged as e:
            if i + 1 < len(candidates):
                log.warning("%s; resuming from %s instead", e, candidates[i + 1])
            else:
                raise RunError(f"{e}; no earlier checkpoint to fall back to: start over with "
                               "overwrite_output_dir=true") from None
    raise RunError("no checkpoint to resume from")
