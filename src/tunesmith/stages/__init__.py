"""Training stages, by name. A stage says how rows are encoded, batched and scored; the training loop, evaluation
and the Web UI's data preview all go through it and never ask which stage they run.

Adding a stage is one module with a `Stage` subclass plus one line in `STAGES` (or `register_stage` at run time).
The table holds import paths, so listing the names (config validation, `--help`, the Web UI) imports no torch.
"""

from __future__ import annotations

from tunesmith.errors import ConfigError
from tunesmith.registry import Registry

STAGES = Registry({
    "sft": "tunesmith.stages.sft:SFTStage",
    "pt": "tunesmith.stages.pt:PretrainStage",
    "rm": "tunesmith.stages.rm:RewardStage",
    "dpo": "tunesmith.stages.dpo:DPOStage",
    "orpo": "tunesmith.stages.orpo:ORPOStage",
}, "config: stage={name!r} is not known; choose one of {choices}", ConfigError)


def register_stage(name: str, stage: str | type) -> None:
    """Add a stage: `stage` is a Stage subclass or its "module:Class" path."""
    STAGES.register(name, stage)


def stage_class(name: str) -> type:
    return STAGES.load(name)


def get_stage(name: str, settings) -> "Stage":  # noqa: F821 - the base class lives in stages.base (imports torch)
    """The stage `name`, built from `settings` (any object with the attributes the stage reads, e.g. TrainConfig)."""
    return stage_class(name).from_settings(settings)
