"""What an export reads from a run directory: the resolved config, the adapter settings, the base model, the log.

A run directory holds either a PEFT adapter (lora, dora, qlora; `adapter_config.json` names the base it was trained
on) or a complete model (full, freeze; `config.json`). Reward-model runs (stage=rm) carry a scalar `score` head.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.run import read_log, require_finished

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded Q4_1 GGUF was quantized from


class ExportError(TunesmithError):
    pass


@dataclass
class RunInfo:
    path: Path
    config: object | None  # TrainConfig, or None when config.yaml is missing or no longer loads
    adapter: dict | None  # adapter_config.json, or None for complete-model runs
    base: str | None  # folder or hub id the adapter merges into; None for complete-model runs
    records: list[dict] = field(default_factory=list)  # trainer_log.jsonl

    @property
    def method(self) -> str:
        if self.config is not None:
            return self.config.method
        if self.adapter is None:
            return "full"
        return "dora" if self.adapter.get("use_dora") else "lora"

    @property
    def stage(self) -> str:
        if self.config is not None:
            return self.config.stage
        return "rm" if self.is_reward else "sft"

    @property
    def is_reward(self) -> bool:
        if self.adapter is not None:
            return self.adapter.get("task_type") == "SEQ_CLS"
        config = json.loads((self.path / "config.json").read_text())
        return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])

    @property
    def base_name(self) -> str:
        """The base model as it may appear in public files: a hub id or a folder name, never a local path."""
        if self.config is not None and not self.config.model:
            return EMBEDDED_HUB_ID
        source = self.base or (self.config.model if self.config is not None else None) or "unknown"
        return public_name(source)

    def final(self, key: str) -> tuple[int, float] | None:
        """(step, value) of the last log line that has `key` (e.g. loss, eval_loss)."""
        for record in reversed(self.records):
            if key in record:
                return record.get("step", 0), record[key]
        return None


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


def read_run(run_dir: str | Path, base: str | None = None) -> RunInfo:
    path = Path(run_dir)
    if not path.is_dir():
        raise ExportError(f"{path}: run directory not found")
    require_finished(path)
    adapter_file = path / "adapter_config.json"
    if not adapter_file.exists() and not (path / "config.json").exists():
        raise ExportError(f"{path}: not a run directory (no adapter_config.json or config.json); "
                          "point export at the output_dir of a finished `tunesmith train`")
    if not (path / "tokenizer_config.json").exists():
        raise ExportError(f"{path}: the run has no tokenizer files; re-run training to finish the run directory")
    adapter = json.loads(adapter_file.read_text()) if adapter_file.exists() else None
    if adapter is None and base:
        raise ExportError(f"{path}: --base only applies to adapter runs; this run holds a complete model")
    resolved = None
    if adapter is not None:
        resolved = base or adapter.get("base_model_name_or_path")
        if not resolved:
            raise ExportError(f"{path}/adapter_config.json names no base model; pass --base FOLDER_OR_HUB_ID")
        local = Path(resolved).expanduser()
        if not local.exists() and (local.is_absolute() or resolved.startswith((".", "~"))):
            raise ExportError(f"base model {resolved} is missing; pass --base with the folder or hub id the run "
                              "was trained from")
        resolved = str(local) if local.exists() else resolved
    return RunInfo(path=path, config=_read_config(path), adapter=adapter, base=resolved, records=read_log(path))


def _read_config(path: Path):
    from tunesmith.config import load_config

    try:
        return load_config(path / "config.yaml") if (path / "config.yaml").exists() else None
    except TunesmithError:  # a config from an older tunesmith: the card just says less
        return None
