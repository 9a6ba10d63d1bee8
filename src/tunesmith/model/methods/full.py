"""method=full: every weight of the language model trains (a multimodal model's vision or audio towers stay as they
are: text rows never reach them); the run holds a complete model."""

from __future__ import annotations

from tunesmith.model.methods.base import Method
from tunesmith.model.parts import unused_by_text


class FullMethod(Method):
    name = "full"

    def wrap(self, model, checkpointing: bool, heads: tuple[str, ...] = ()):
        self.enable_checkpointing(model, checkpointing)
        for p in model.parameters():
            p.requires_grad_(True)
        for name in unused_by_text(model):  # a multimodal model's towers: text-only rows never reach them
            model.get_submodule(name).requires_grad_(False)
        return model
