"""How weights are trained (`method=`), by name. A method says how the base is loaded (quantized or not), how it is
wrapped, which parameters train, and whether the result is a PEFT adapter or a complete model; the training loop is
the same for all of them.

Adding a method is one module with a `Method` subclass plus one line in `METHODS` (or `register_method`). The table
holds import paths, so listing the names imports no torch.
"""

from __future__ import annotations

from tunesmith.errors import ConfigError
from tunesmith.registry import Registry

METHODS = Registry({
    "full": "tunesmith.model.methods.full:FullMethod",
    "freeze": "tunesmith.model.methods.freeze:FreezeMethod",
    "lora": "tunesmith.model.methods.lora:LoraMethod",
    "dora": "tunesmith.model.methods.lora:DoraMethod",
    "qlora": "tunesmith.model.methods.qlora:QLoraMethod",
}, "config: method={name!r} is not known; choose one of {choices}", ConfigError)


def register_method(name: str, method: str | type) -> None:
    METHODS.register(name, method)


def method_class(name: str) -> type:
    return METHODS.load(name)


def get_method(name: str, settings=None) -> "Method":  # noqa: F821 - the base class lives in methods.base
    """The method `name`, built from `settings` (any object with the attributes it reads, e.g. TrainConfig)."""
    return method_class(name).from_settings(settings)


def saves_adapter(name: str) -> bool:
    """Whether a run of this method holds a PEFT adapter (True) or a complete model."""
    return method_class(name).saves_adapter
