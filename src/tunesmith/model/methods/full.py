"""method=full: every weight trains; the run holds a complete model."""

from __future__ import annotations

from tunesmith.model.methods.base import Method


class FullMethod(Method):
    name = "full"

    def wrap(self, model, checkpointing: bool, heads: tuple[str, ...] = ()):
        self.enable_checkpointing(model, checkpointing)
        for p in model.parameters():
            p.requires_grad_(True)
        return model
