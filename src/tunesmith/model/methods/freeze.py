"""method=freeze: only the last `freeze_layers` decoder layers (and any `freeze_modules` names, such as
lm_head,norm) train; the run holds a complete model."""

from __future__ import annotations

from tunesmith.errors import ConfigError
from tunesmith.model.methods.base import Method
from tunesmith.model.parts import decoder_layers


class FreezeMethod(Method):
    name = "freeze"
    keys = ("freeze_layers", "freeze_modules")

    def __init__(self, freeze_layers: int = 2, freeze_modules: str = "", **settings):
        super().__init__(**settings)
        self.freeze_layers = freeze_layers
        self.freeze_modules = [n.strip() for n in freeze_modules.split(",") if n.strip()]

    def wrap(self, model, checkpointing: bool, heads: tuple[str, ...] = ()):
        self.enable_checkpointing(model, checkpointing)
        for p in model.parameters():
            p.requires_grad_(False)
        layers = decoder_layers(model)
        if not layers:
            raise ConfigError("config: method=freeze cannot find this model's decoder layers; use method=lora")
        if self.freeze_layers > len(layers):
            raise ConfigError(f"config: freeze_layers={self.freeze_layers} but the model has {len(layers)} layers")
        for layer in list(layers)[len(layers) - self.freeze_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        for name in self.freeze_modules:
            matched = [p for n, p in model.named_parameters() if f".{name}." in f".{n}"]
            if not matched:
                raise ConfigError(f"config: freeze_modules: no parameter matches '{name}'; use names like lm_head, "
                                  "norm")
            for p in matched:
                p.requires_grad_(True)
        self.train_heads(model, heads)
        return model
