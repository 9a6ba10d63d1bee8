"""The Train tab's form <-> `TrainConfig`, with no rules of its own.

The form holds one widget per config key. Its values become `key=value` overrides (only the keys that differ from
the defaults, or from a loaded config file), and `load_config` turns those into the config object exactly as
`tunesmith train [CONFIG] key=value ...` would: the preview command *is* the config the Start button runs.
"""

from __future__ import annotations

import dataclasses
import shlex
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import FIELDS, TrainConfig, load_config, parse_override

# Keys with their own widgets at the top of the Train tab.
HEAD_FIELDS = ("model", "method", "stage", "template", "dataset")
# The hyper-parameters most runs touch; every other key goes into the generated "advanced" section.
MAIN_FIELDS = ("output_dir", "learning_rate", "num_epochs", "max_steps", "per_device_batch_size",
               "gradient_accumulation_steps", "cutoff_len", "lora_rank", "lora_alpha", "val_size", "eval_steps",
               "save_steps", "nproc")
ADVANCED_FIELDS = tuple(name for name in FIELDS if name not in HEAD_FIELDS + MAIN_FIELDS)
FORM_FIELDS = HEAD_FIELDS + MAIN_FIELDS + ADVANCED_FIELDS
_HINTS = typing.get_type_hints(TrainConfig)


def default(name: str) -> Any:
    f = FIELDS[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def defaults() -> dict[str, Any]:
    return {name: default(name) for name in FIELDS}


def kind(name: str) -> str:
    """Which widget edits the key: choice, bool, int, float, text, optional_text, or yaml (lists, mappings,
    true-or-path and the like, typed as YAML like on the command line)."""
    if FIELDS[name].metadata.get("choices"):
        return "choice"
    hint = _HINTS[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if options == (bool,):
        return "bool"
    if options == (int,):
        return "int"
    if options == (float,):
        return "float"
    if options == (str,):
        return "text"
    if set(options) == {str, type(None)}:
        return "optional_text"
    return "yaml"


def flow(value: Any) -> str:
    """One-line YAML for a value, quoted only where YAML would otherwise read something else."""
    dumped = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()


def choices(name: str) -> list[str]:
    """A key's allowed values as the dropdown shows them (true, false, auto, 4, 8, sft, ...)."""
    return [flow(c) for c in FIELDS[name].metadata["choices"]]


def to_widget(name: str, value: Any) -> Any:
    """A config value as its widget shows it."""
    k = kind(name)
    if k == "choice":
        return flow(value)
    if k == "optional_text":
        return value or ""
    if k == "yaml":
        return "" if value is None else flow(value)
    return value


def from_widget(name: str, raw: Any) -> Any:
    """A widget's value as the config key's value (numbers from number boxes arrive as floats)."""
    k = kind(name)
    if k == "int" and isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if k == "optional_text":
        return raw.strip() or None if isinstance(raw, str) else raw
    if k == "yaml":
        return yaml.safe_load(raw) if isinstance(raw, str) and raw.strip() else None
    if k == "choice":  # back to the typed choice: "true" -> True, "8" -> 8; anything else is left to validation
        return {flow(c): c for c in FIELDS[name].metadata["choices"]}.get(raw, raw)
    return raw


def override(name: str, value: Any) -> str:
    """`key=value` that `parse_override` reads back as exactly `value`."""
    if value is None:
        return f"{name}="
    text = flow(value)
    if isinstance(value, str) and parse_override(f"{name}={value}")[1] == value:
        text = value  # plain text stays unquoted: output_dir=runs/a, not output_dir='runs/a'
    return f"{name}={text}"


def overrides(values: dict[str, Any], base: dict[str, Any] | None = None) -> list[str]:
    """The `key=value` list that turns `base` (a loaded config, else the defaults) into `values`."""
    reference = base if base is not None else defaults()
    return [override(name, value) for name, value in values.items() if value != reference.get(name)]


def build_config(base_path: str | None, extra: list[str]) -> TrainConfig:
    """The very call `tunesmith train [base_path] extra...` makes."""
    return load_config(base_path, extra)


def command_line(base_path: str | None, extra: list[str]) -> str:
    return shlex.join(["tunesmith", "train", *([base_path] if base_path else []), *extra])


def parse_command(command: str) -> tuple[str | None, list[str]]:
    """The inverse of `command_line`, as the CLI splits it (a first argument with '=' is an override)."""
    words = shlex.split(command)
    if words[:2] != ["tunesmith", "train"]:
        raise ValueError(f"not a tunesmith train command: {command}")
    rest = words[2:]
    if rest and "=" not in rest[0]:
        return rest[0], rest[1:]
    return None, rest


def config_values(path: str | Path) -> dict[str, Any]:
    """Every key of a config file, resolved as the CLI would (unknown keys and bad values stop with one line)."""
    return load_config(path).to_dict()
