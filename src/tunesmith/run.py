"""The run directory: one owner for its layout, its log, and for opening and loading a run.

A run directory (`output_dir`) holds the resolved `config.yaml`, the log `trainer_log.jsonl`, `loss.png`,
`tensorboard/`, `checkpoints/step-N/` and, once training has finished, the result: a PEFT adapter or a complete
model, plus the tokenizer that carries the training template. The last line of the log, `{"done": true, ...}`, is
written only after the result is on disk, so it is the run's finished marker: a run without it was killed or failed,
and whatever weights sit in the folder may belong to an earlier run. Loaders refuse such a folder; each of its
checkpoints loads (every checkpoint is complete on its own, in the same layout).

`RunDir.open(spec)` opens anything a user names as a model: a run, a checkpoint, an export or other model folder,
a hub id, a `.gguf` file, or the embedded base (`None`, "" or "base"); `load_run` loads it with the right head.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tunesmith.errors import ModelError, TunesmithError

LOG_FILE = "trainer_log.jsonl"
CONFIG_FILE = "config.yaml"
PLOT_FILE = "loss.png"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"  # a checkpoint folder's own marker (see train/checkpoint.py)
ADAPTER_FILE = "adapter_config.json"
EMBEDDED = "base"  # how the CLI, eval and the Web UI name the embedded SmolLM2
# What training writes as its result: weights (adapter or complete model), tokenizer files, peft's model card.
RESULT_PATTERNS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "config.json",
                   "generation_config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
                   "pytorch_model*.bin", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "vocab.json", "merges.txt", "README.md")


class RunError(TunesmithError):
    pass


# --- the log -----------------------------------------------------------------------------------------------------

@dataclass
class TrainLog:
    """`trainer_log.jsonl` (format: train/monitor.py), read leniently (a torn last line is skipped, not fatal) and
    written strictly (one JSON object per line, no NaN)."""

    records: list[dict] = field(default_factory=list)

    @classmethod
    def read(cls, folder: str | Path) -> "TrainLog":
        try:
            lines = (Path(folder) / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return cls()
        return cls.parse(lines)

    @classmethod
    def parse(cls, lines: list[str]) -> "TrainLog":
        """Lines that are not complete JSON objects are skipped: the trainer may be writing the last one now."""
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return cls(records)

    @staticmethod
    def line(record: dict) -> str:
        """One strict-JSON log line; a non-finite number (never expected: training stops on one) becomes null."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        return json.dumps(clean, allow_nan=False) + "\n"

    def rewrite(self, folder: str | Path) -> None:
        """Replace the log atomically: a crash leaves the old log or the new one, never half of one."""
        path = Path(folder) / LOG_FILE
        tmp = path.with_name(f".{LOG_FILE}.tmp")
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in self.records), encoding="utf-8")
        os.replace(tmp, path)

    def points(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of every record with a numeric `key` (loss, eval_loss, ...)."""
        return [(r["step"], float(r[key])) for r in self.records
                if isinstance(r.get("step"), int) and isinstance(r.get(key), (int, float))]

    def final(self, key: str) -> tuple[int, float] | None:
        """(step, value) of the last record that has `key`."""
        for record in reversed(self.records):
            if key in record and record[key] is not None:
                return record.get("step", 0), record[key]
        return None

    @property
    def done(self) -> dict | None:
        return next((r for r in reversed(self.records) if r.get("done")), None)


def read_log(folder: str | Path) -> list[dict]:
    return TrainLog.read(folder).records


def rewrite_log(folder: str | Path, records: list[dict]) -> None:
    TrainLog(records).rewrite(folder)


# --- layout ------------------------------------------------------------------------------------------------------

def is_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / STATE_FILE).exists()


def is_run(folder: str | Path) -> bool:
    """A folder `tunesmith train` wrote into (finished or not); exports and hub model folders are not runs."""
    folder = Path(folder)
    return not is_checkpoint(folder) and ((folder / LOG_FILE).exists() or (folder / CONFIG_FILE).exists())


def is_finished(folder: str | Path) -> bool:
    return TrainLog.read(folder).done is not None


def require_finished(folder: str | Path) -> None:
    """Refuse to load a run that did not finish: its weights, if any, are not the ones its config describes."""
    folder = Path(folder)
    if is_run(folder) and not is_finished(folder):
        latest = latest_checkpoint(folder)
        hint = f"point at its checkpoint {latest}" if latest else "it wrote no checkpoint"
        raise RunError(f"{folder}: this run did not finish (no final line in {LOG_FILE}), so the weights here may be "
                       f"from an earlier run; resume it with `tunesmith train {folder / CONFIG_FILE} resume=true`, or "
                       f"{hint}")


def checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a half-written `.tmp-*` folder is not one)."""
    root = Path(folder) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if p.name[5:].isdigit() and is_checkpoint(p)]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None


def clear_results(folder: str | Path) -> None:
    """Start a run over: remove everything an earlier run wrote here, so nothing of it can outlive a killed re-run."""
    folder = Path(folder)
    doomed = [folder / name for name in (LOG_FILE, PLOT_FILE, TENSORBOARD, CHECKPOINTS)]
    doomed += [p for pattern in RESULT_PATTERNS for p in folder.glob(pattern)]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def model_of_config(path: Path) -> tuple[str, str | None]:
    """A config file named as a model: a LLaMA-Factory inference/merge YAML names its model (and adapter); a training
    config, tunesmith's or LLaMA-Factory's, means the run it trains into (its output_dir)."""
    from tunesmith import llamafactory
    from tunesmith.config import load_config

    reference = llamafactory.model_reference(path)
    if reference is not None:
        return reference
    output_dir = load_config(path).output_dir
    if not Path(output_dir).expanduser().is_dir():
        raise RunError(f"{path}: a training config whose run ({output_dir}) does not exist yet; train it first: "
                       f"tunesmith train {path}")
    return output_dir, None


# --- opening anything a user names as a model --------------------------------------------------------------------

class RunDir:
    """A run, a checkpoint, a model folder, a hub id, a .gguf file or the embedded base, and what is known of it."""

    def __init__(self, spec: str | None, path: Path | None, base_override: str | None = None):
        self.spec = spec  # as the user wrote it; None for the embedded base
        self.path = path  # the folder, when there is one
        self._base_override = base_override

    @classmethod
    def open(cls, spec: str | Path | None, base: str | None = None) -> "RunDir":
        spec = None if spec in (None, "", EMBEDDED) else str(spec)
        if spec is not None and spec.lower().endswith((".yaml", ".yml")) and Path(spec).expanduser().is_file():
            spec, config_base = model_of_config(Path(spec).expanduser())
            base = base or config_base
        path = Path(spec).expanduser() if spec is not None else None
        return cls(spec, path if path is not None and path.is_dir() else None, base)

    # what it is
    @property
    def kind(self) -> str:
        if self.path is None:
            return "model"
        return "checkpoint" if is_checkpoint(self.path) else "run" if is_run(self.path) else "model"

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else (self.spec or EMBEDDED)

    @property
    def run_root(self) -> Path | None:
        """The run a checkpoint belongs to (RUN/checkpoints/step-N -> RUN); a run is its own root."""
        if self.kind == "checkpoint" and self.path.parent.name == CHECKPOINTS:
            return self.path.parent.parent
        return self.path if self.kind == "run" else None

    @property
    def checkpoint_step(self) -> int | None:
        return int(self.path.name[5:]) if self.kind == "checkpoint" and self.path.name[5:].isdigit() else None

    @cached_property
    def config(self):
        """The run's TrainConfig, or None (not a run, or a config an older tunesmith wrote that no longer loads)."""
        from tunesmith.config import load_config

        if self.path is None or not (self.path / CONFIG_FILE).exists():
            return None
        try:
            return load_config(self.path / CONFIG_FILE)
        except TunesmithError:
            return None

    @cached_property
    def adapter(self) -> dict | None:
        file = self.path / ADAPTER_FILE if self.path is not None else None
        return json.loads(file.read_text()) if file is not None and file.exists() else None

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

    @cached_property
    def is_reward(self) -> bool:
        """A reward model (stage=rm): a one-scalar score head instead of a language-model head."""
        if self.adapter is not None:
            return self.adapter.get("task_type") == "SEQ_CLS"
        if self.path is not None and (self.path / "config.json").exists():
            config = json.loads((self.path / "config.json").read_text())
            return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
        return False

    @property
    def base_override(self) -> str | None:
        return self._base_override

    @property
    def base(self) -> str | None:
        """For an adapter: the folder or hub id it applies to (--base overrides a base that moved)."""
        if self.adapter is None:
            return None
        found = self._base_override or self.adapter.get("base_model_name_or_path")
        if not found:
            raise RunError(f"{self.path}/{ADAPTER_FILE} names no base model; pass the base folder or hub id")
        local = Path(found).expanduser()
        if not local.exists() and (local.is_absolute() or found.startswith((".", "~"))):
            raise RunError(f"base model {found} is missing; pass the folder or hub id the run was trained from "
                           "(--base)")
        if local.exists():
            return str(local)
        from tunesmith.model.loader import hub_model

        return hub_model(found)

    @property
    def weights(self) -> str:
        """What `from_pretrained` loads for the complete model (not an adapter): a folder or hub id."""
        from tunesmith.model.loader import resolve_model

        return str(self.path) if self.path is not None else resolve_model(self.spec)

    @property
    def tokenizer_source(self) -> str:
        return str(self.path) if self.path is not None else self.weights

    @cached_property
    def log(self) -> TrainLog:
        """The training log; for a checkpoint, its run's log up to the checkpoint's step (as it was then)."""
        root = self.run_root
        log = TrainLog.read(root) if root is not None else TrainLog()
        step = self.checkpoint_step
        if step is not None:
            log = TrainLog([r for r in log.records if not r.get("done") and (r.get("step") or 0) <= step])
        return log

    def checkpoints(self) -> list[Path]:
        return checkpoints(self.path) if self.kind == "run" else []

    def require_loadable(self) -> "RunDir":
        """Refuse an unfinished run, a base override on a complete model, or a folder holding no model."""
        if self.spec is not None and self.path is None and not self.spec.endswith(".gguf") \
                and Path(self.spec).expanduser().exists():
            raise ModelError(f"{self.spec}: not a folder; give a run, checkpoint or model folder, or a .gguf file")
        if self.path is not None:
            require_finished(self.path)
            if self.adapter is None and not (self.path / "config.json").exists():
                raise ModelError(f"{self.path}: no model here (no {ADAPTER_FILE} or config.json); point at the "
                                 "output_dir of a finished `tunesmith train`, a checkpoint or an export")
        if self._base_override and self.adapter is None:
            raise RunError(f"{self.path}: --base only applies to adapter runs; this run holds a complete model")
        if self.adapter is not None and self.config is not None and self.config.train_from_scratch:
            raise RunError(f"{self.path}: this adapter was trained on random base weights (train_from_scratch=true), "
                           "which were not saved; train with method=full to keep a model trained from scratch")
        return self


@dataclass
class LoadedRun:
    run: RunDir
    model: object
    tokenizer: object
    adapter_name: str | None = None  # the peft adapter to switch on, when several share one base


def load_run(spec: str | Path | None, device: str = "auto", dtype: str | object = "auto", merge: bool = True,
             shared: dict | None = None, base: str | None = None, adapter_name: str | None = None) -> LoadedRun:
    """Load anything `RunDir.open` opens, with the head it was trained with (a score head for reward models).
    Adapters are merged into their base unless `merge=False`; `shared` (base path -> peft model) lets several
    adapters on one base share a single copy. `dtype`: "auto" = bf16 on GPUs that have it, else fp32; "checkpoint"
    = the weights' own dtype (for export); or a torch dtype."""
    from tunesmith.model.loader import load_model, load_tokenizer, pick_device, pick_dtype

    run = RunDir.open(spec, base).require_loadable()
    target = pick_device(device)
    # transformers' own "auto" reads the dtype the weights were saved in
    torch_dtype = "auto" if dtype == "checkpoint" else pick_dtype(dtype, target) if isinstance(dtype, str) else dtype
    head = "score" if run.is_reward else "causal"
    tokenizer = load_tokenizer(run.tokenizer_source)
    if run.adapter is None:
        model = load_model(run.weights, torch_dtype, target, head=head)
        model.config.pad_token_id = tokenizer.pad_token_id
        return LoadedRun(run, model.eval(), tokenizer)
    from peft import PeftModel

    name = adapter_name or run.name
    if shared is not None and run.base in shared:
        model = shared[run.base]
        model.load_adapter(str(run.path), adapter_name=name)
        return LoadedRun(run, model, tokenizer, name)
    base_model = load_model(run.base, torch_dtype, target, head=head)
    base_model.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(base_model, str(run.path), adapter_name=name).to(target)
    if shared is not None:
        shared[run.base] = model
        return LoadedRun(run, model.eval(), tokenizer, name)
    if merge:
        return LoadedRun(run, model.merge_and_unload().eval(), tokenizer)
    return LoadedRun(run, model.eval(), tokenizer, name)
