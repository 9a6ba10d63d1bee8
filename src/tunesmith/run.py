"""The run directory: one owner for its layout, its log, and the question "may this folder be loaded?".

A run directory (`output_dir`) holds the resolved `config.yaml`, the log `trainer_log.jsonl`, `loss.png`,
`tensorboard/`, `checkpoints/step-N/` and, once training has finished, the result: a PEFT adapter or a complete
model, plus the tokenizer that carries the training template. The last line of the log, `{"done": true, ...}`, is
written only after the result is on disk, so it is the run's finished marker: a run without it was killed or failed,
and whatever weights sit in the folder may belong to an earlier run. Loaders refuse such a folder (a checkpoint of it
still loads: every checkpoint is complete on its own).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tunesmith.errors import TunesmithError

LOG_FILE = "trainer_log.jsonl"
CONFIG_FILE = "config.yaml"
PLOT_FILE = "loss.png"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"  # a checkpoint folder's own marker (see train/checkpoint.py)
# What training writes as its result: weights (adapter or complete model), tokenizer files, peft's model card.
RESULT_PATTERNS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "config.json",
                   "generation_config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
                   "pytorch_model*.bin", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "vocab.json", "merges.txt", "README.md")


class RunError(TunesmithError):
    pass


def read_log(folder: str | Path) -> list[dict]:
    """The records of `trainer_log.jsonl`; a torn last line (a run killed mid-write) is skipped, not fatal."""
    path = Path(folder) / LOG_FILE
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def rewrite_log(folder: str | Path, records: list[dict]) -> None:
    """Replace the log atomically: a crash leaves the old log or the new one, never half of one."""
    path = Path(folder) / LOG_FILE
    tmp = path.with_name(f".{LOG_FILE}.tmp")
    tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def is_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / STATE_FILE).exists()


def is_run(folder: str | Path) -> bool:
    """A folder `tunesmith train` wrote into (finished or not); exports and hub model folders are not runs."""
    folder = Path(folder)
    return not is_checkpoint(folder) and ((folder / LOG_FILE).exists() or (folder / CONFIG_FILE).exists())


def is_finished(folder: str | Path) -> bool:
    return any(r.get("done") for r in read_log(folder))


def require_finished(folder: str | Path) -> None:
    """Refuse to load a run that did not finish: its weights, if any, are not the ones its config describes."""
    folder = Path(folder)
    if is_run(folder) and not is_finished(folder):
        latest = latest_checkpoint(folder)
        hint = f"point at its checkpoint {latest}" if latest else "it wrote no checkpoint"
        raise RunError(f"{folder}: this run did not finish (no final line in {LOG_FILE}), so the weights here may be "
                       f"from an earlier run; resume it with `tunesmith train {folder / CONFIG_FILE} resume=true`, or "
                       f"{hint}")


def checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a half-written `.tmp-*` folder is not one)."""
    root = Path(folder) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if p.name[5:].isdigit() and is_checkpoint(p)]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None


def clear_results(folder: str | Path) -> None:
    """Start a run over: remove everything an earlier run wrote here, so nothing of it can outlive a killed re-run."""
    folder = Path(folder)
    doomed = [folder / name for name in (LOG_FILE, PLOT_FILE, TENSORBOARD, CHECKPOINTS)]
    doomed += [p for pattern in RESULT_PATTERNS for p in folder.glob(pattern)]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
