"""Training stages, by name. A stage says how rows are encoded, batched and scored; the training loop, evaluation
and the Web UI's data preview all go through it and never ask which stage they run.

Adding a stage is one module with a `Stage` subclass plus one line in `STAGES` (or `register_stage` at run time).
The table holds import paths, so listing the names (config validation, `--help`, the Web UI) imports no torch.
"""

from __future__ import annotations

import importlib

from tunesmith.errors import ConfigError

STAGES: dict[str, str] = {
    "sft": "tunesmith.stages.sft:SFTStage",
    "pt": "tunesmith.stages.pt:PretrainStage",
    "rm": "tunesmith.stages.rm:RewardStage",
    "dpo": "tunesmith.stages.dpo:DPOStage",
}
_loaded: dict[str, type] = {}


def register_stage(name: str, stage: str | type) -> None:
    """Add a stage: `stage` is a Stage subclass or its "module:Class" path."""
    STAGES[name] = stage if isinstance(stage, str) else f"{stage.__module__}:{stage.__qualname__}"
    if not isinstance(stage, str):
        _loaded[name] = stage


def stage_class(name: str) -> type:
    if name not in STAGES:
        raise ConfigError(f"config: stage={name!r} is not known; choose one of {', '.join(STAGES)}")
    if name not in _loaded:
        module, _, cls = STAGES[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)
    return _loaded[name]


def get_stage(name: str, settings) -> "Stage":  # noqa: F821 - the base class lives in stages.base (imports torch)
    """The stage `name`, built from `settings` (any object with the attributes the stage reads, e.g. TrainConfig)."""
    return stage_class(name).from_settings(settings)
