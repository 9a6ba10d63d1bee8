"""Loss curves of the run behind a model, for the report: read from the run's `trainer_log.jsonl`.

A run directory has the log itself; a checkpoint (RUN/checkpoints/step-N) shows its run's curves with the step it
was saved at. Anything else (a hub id, an export, the base model) has no training log and no curves.
"""

from __future__ import annotations

import json
from pathlib import Path


def training_curves(spec: str) -> dict | None:
    """{"run", "train": [[step, loss]], "eval": [[step, eval_loss]], "checkpoint_step"} or None."""
    if spec in ("", "base"):
        return None
    path = Path(spec).expanduser()
    checkpoint_step = None
    if path.parent.name == "checkpoints" and path.name.startswith("step-") and path.name[5:].isdigit():
        checkpoint_step, path = int(path.name[5:]), path.parent.parent
    log = path / "trainer_log.jsonl"
    if not log.is_file():
        return None
    train, evals = [], []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash mid-write
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        if isinstance(record.get("loss"), (int, float)):
            train.append([record["step"], float(record["loss"])])
        if isinstance(record.get("eval_loss"), (int, float)):
            evals.append([record["step"], float(record["eval_loss"])])
    if not train and not evals:
        return None
    return {"run": str(path), "train": train, "eval": evals, "checkpoint_step": checkpoint_step}
