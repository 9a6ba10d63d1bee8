"""Names an export may publish: hub ids stay, local paths become folder names; the export's error type."""

from __future__ import annotations

import re
from pathlib import Path

from tunesmith.errors import TunesmithError

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded Q4_1 GGUF was quantized from


class ExportError(TunesmithError):
    pass


def public_name(value: str) -> str:
    """Hub ids stay as they are; anything that is (or looks like) a local path is cut to its last component."""
    text = str(value)
    looks_like_file = text.lower().endswith((".json", ".jsonl", ".csv", ".parquet", ".txt", ".gguf"))
    if is_hub_id(text) and not looks_like_file and not Path(text).expanduser().exists():
        return text
    return Path(text.rstrip("/\\")).name or text


def is_hub_id(text: str) -> bool:
    """owner/name, optionally with a dataset split (owner/name:train)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?", text))


def public_base_name(run) -> str:
    """The base model of a run (a tunesmith.run.RunDir) as it may appear in public files."""
    if run.config is not None and not run.config.model:
        return EMBEDDED_HUB_ID
    source = run.base or (run.config.model if run.config is not None else None) or "unknown"
    return public_name(source)
