"""The weights of the best evaluation so far, kept on disk so an early-stopped (or `load_best`) run can end with them.

Only the trained tensors are kept (the adapter for LoRA; every weight for full fine-tuning), in
`checkpoints/best.safetensors`, written atomically each time the eval loss improves. Each checkpoint carries a copy,
so a resumed run still knows the best weights from before the interruption.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

BEST_FILE = "best.safetensors"


class BestWeights:
    def __init__(self, folder: Path, enabled: bool):
        self.path = folder / BEST_FILE
        self.enabled = enabled
        self.step: int | None = None

    def save(self, tensors: dict, step: int) -> None:
        """`tensors`: the trainable state, gathered by the caller (the main process writes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{BEST_FILE}.tmp")
        save_file(tensors, tmp, metadata={"step": str(step)})
        os.replace(tmp, self.path)
        self.step = step

    def load(self) -> dict:
        return load_file(self.path)

    def copy_into(self, checkpoint: Path) -> None:
        if self.enabled and self.path.exists():
            shutil.copyfile(self.path, checkpoint / BEST_FILE)

    def restore_from(self, checkpoint: Path, best_step: int | None) -> bool:
        """On resume: bring back the checkpoint's copy of the best weights; False when it has none."""
        if not self.enabled or best_step is None:
            return True
        saved = checkpoint / BEST_FILE
        if not saved.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved, self.path)
        self.step = best_step
        return True

    def discard(self) -> None:
        """The run's result now holds the chosen weights; the snapshot is no longer needed."""
        self.path.unlink(missing_ok=True)
