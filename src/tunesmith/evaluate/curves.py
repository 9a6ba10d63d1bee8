"""Loss curves of the run behind a model, for the report: read from the run's log (`tunesmith.run.TrainLog`).

A run directory has the log itself; a checkpoint (RUN/checkpoints/step-N) shows its run's curves with the step it
was saved at. Anything else (a hub id, an export, the base model) has no training log and no curves.
"""

from __future__ import annotations

from tunesmith.run import RunDir, TrainLog


def training_curves(spec: str) -> dict | None:
    """{"run", "train": [[step, loss]], "eval": [[step, eval_loss]], "checkpoint_step"} or None."""
    run = RunDir.open(spec)
    root = run.run_root
    if root is None:
        return None
    log = TrainLog.read(root)  # the whole run, even for a checkpoint: the report marks where the checkpoint is
    train, evals = log.points("loss"), log.points("eval_loss")
    if not train and not evals:
        return None
    return {"run": str(root), "train": [list(p) for p in train], "eval": [list(p) for p in evals],
            "checkpoint_step": run.checkpoint_step}
