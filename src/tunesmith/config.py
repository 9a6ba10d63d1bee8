"""One typed settings object for every job.

`TrainConfig` is the single source of truth: the YAML file, `key=value` overrides on the command line and (later)
the Web UI all produce the same object, and each field's `help` is the documentation. The flat key names are a
contract other tools rely on; add keys, never rename them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunesmith import llamafactory, llamafactory_v1
from tunesmith.data.templates import FORMATS as TEMPLATE_FORMATS
from tunesmith.errors import ConfigError
from tunesmith.model.methods import METHODS as METHOD_REGISTRY
from tunesmith.stages import STAGES as STAGE_REGISTRY


class _Live:
    """Choices read from a registry each time (a stage, method or template registered at run time is valid)."""

    def __init__(self, *sources):
        self.sources = sources

    def __iter__(self):
        return iter([name for source in self.sources for name in source])

    def __contains__(self, value) -> bool:
        return value in list(self)


# Stages, methods and templates are registries (one module or entry each, listed without importing torch).
STAGES, METHODS, TEMPLATES = _Live(STAGE_REGISTRY), _Live(METHOD_REGISTRY), _Live(("auto",), TEMPLATE_FORMATS)
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw", "paged_adamw_8bit", "sgd")
DTYPES = ("auto", "fp32", "bf16", "fp16", "pure_bf16", "pure_fp16")
DISTRIBUTED = ("auto", "ddp", "fsdp", "deepspeed")
FORMATS = ("auto", "alpaca", "sharegpt", "openai", "text", "preference")
# Keys that must never sit in a file that gets saved next to a model.
SECRET_KEYS = {"token", "hf_token", "hub_token", "api_key"}


def _f(default: Any, help: str, choices=None, unknown: str = "", **kw) -> Any:
    """A setting: its default, help and allowed `choices`; `unknown` is the way out offered for a value not among
    them."""
    meta = {"help": help, "choices": choices, "unknown": unknown}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    # --- what to train
    model: str | None = _f(None, "Hub id, local directory or .gguf file; empty = embedded SmolLM2-135M-Instruct.")
    train_from_scratch: bool = _f(False, "Start from random weights built from the model's config (pre-training from "
                                         "scratch; the folder may hold only config.json and a tokenizer). With an "
                                         "adapter method the random base is not saved: such a run only measures.")
    stage: str = _f("sft", "sft (instructions/chat), pt (raw text), rm (reward model), dpo (preference pairs), orpo "
                           "(preference pairs, SFT included, no reference model).", STAGES)
    method: str = _f("lora", "How weights are trained: full, freeze (last layers), lora, dora, qlora.", METHODS)
    dataset: str | list[str] | None = _f(None, "Data file(s) (json, jsonl, csv, tsv, parquet, txt; also "
                                                ".gz/.bz2/.xz; a list, a,b or a pattern like 'data/*.jsonl'), a "
                                                "folder (its train files) or a hub dataset.")
    val_dataset: str | list[str] | None = _f(None, "Separate validation data (of a folder or hub dataset: its "
                                                    "validation split, else its test one); overrides val_size.")
    val_size: float = _f(0.0, "Validation split: a fraction (<1) or a row count (>=1) taken from `dataset`.")
    dataset_format: str = _f("auto", "Row format; auto-detected from the columns.", FORMATS)
    columns: dict[str, str] = _f({}, "Column mapping, canonical name -> your column, e.g. {instruction: question}.")
    max_samples: int = _f(0, "Use at most this many training rows (0 = all).")
    template: str = _f("auto", "Prompt template: auto (the tokenizer's own chat template) or a named one.", TEMPLATES,
                       unknown="LLaMA-Factory's named templates, such as qwen or llama2, copy the model's own chat "
                               "template: template=auto")
    system: str | None = _f(None, "System prompt added to rows that have none.")
    cutoff_len: int = _f(1024, "Maximum tokens per row; longer rows are truncated.")
    train_on_prompt: bool = _f(False, "Also compute the loss on prompts (default: answers only).")
    # --- where
    output_dir: str = _f("runs/run", "Run directory: adapter, tokenizer, config, logs, plot, checkpoints.")
    resume: bool | str = _f(False, "true = continue from the latest checkpoint in output_dir, or a checkpoint path.")
    overwrite_output_dir: bool = _f(False, "Allow training into a run directory that already holds a finished run.")
    # --- how long
    max_steps: int = _f(0, "Optimizer steps to run; 0 = num_epochs over the data.")
    num_epochs: float = _f(3.0, "Passes over the training data when max_steps is 0.")
    per_device_batch_size: int = _f(2, "Rows per micro-batch on each process (the padded-equivalent; see "
                                       "max_tokens_per_batch).")
    gradient_accumulation_steps: int = _f(8, "Micro-batches per optimizer step.")
    max_tokens_per_batch: int = _f(
        0, "Token budget of one packed micro-batch; 0 = auto, from free memory (rows per step stay fixed)."
    )
    # --- optimisation
    learning_rate: float = _f(2e-4, "Peak learning rate.")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warmup.", SCHEDULERS)
    warmup_steps: int = _f(0, "Linear warmup steps.")
    warmup_ratio: float = _f(0.0, "Linear warmup as a fraction of all optimizer steps, e.g. 0.1; used when "
                                  "warmup_steps is 0.")
    optimizer: str = _f("adamw", "Optimizer (adamw_8bit needs bitsandbytes).", OPTIMIZERS)
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).")
    gradient_checkpointing: bool | str = _f(
        "auto", "Recompute activations in backward to save memory; auto = only if a row would not fit otherwise.",
        (True, False, "auto"))
    torch_compile: bool = _f(False, "Compile the decoder layers with torch.compile (fuses the small ops; the first "
                                    "steps pay the compile time).")
    dtype: str = _f("auto", "Precision: bf16/fp16 = mixed (weights and optimizer in fp32, compute under autocast; "
                            "fp16 with loss scaling); pure_bf16/pure_fp16 = weights too; auto = bf16 on GPUs and on "
                            "CPUs with AVX512-BF16/AMX, fp16 on older GPUs, else fp32.", DTYPES)
    device: str = _f("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps.")
    seed: int = _f(42, "Seed for shuffling, splitting, dropout and initialisation.")
    shuffle: bool = _f(True, "Reshuffle training rows every epoch; false = file order (e.g. to compare tools).")
    # --- many processes and machines (tunesmith starts them itself; torchrun / accelerate launch work too)
    distributed: str = _f("auto", "How processes share the work: auto (ddp with several processes), ddp (a full "
                                  "copy each), fsdp (FSDP2: weights, gradients and optimizer state sharded), "
                                  "deepspeed (ZeRO, see deepspeed).", DISTRIBUTED)
    deepspeed: str = _f("zero2", "distributed=deepspeed: zero2, zero3, zero3_offload or a DeepSpeed JSON file.")
    fsdp_cpu_offload: bool = _f(False, "distributed=fsdp: keep the sharded weights and optimizer state in CPU memory.")
    nproc: int = _f(1, "Processes to start on this machine (one per GPU); 1 = this process trains alone.")
    nnodes: int = _f(1, "Machines taking part; run the same command on each with its node_rank.")
    node_rank: int = _f(0, "This machine's number, 0 .. nnodes-1 (0 hosts the rendezvous at master_addr).")
    master_addr: str = _f("127.0.0.1", "Address of machine 0, reachable from every machine.")
    master_port: int = _f(29500, "Port on machine 0 for the rendezvous.")
    # --- evaluation, checkpoints, logging
    eval_steps: int = _f(0, "Evaluate every N steps (0 = only at start and end).")
    save_steps: int = _f(0, "Write a checkpoint every N steps (0 = only the final adapter).")
    save_total_limit: int = _f(3, "Keep at most this many checkpoints (0 = all).")
    logging_steps: int = _f(1, "Log train loss every N steps.")
    early_stopping_patience: int = _f(0, "Stop after N evaluations without a better eval loss (0 = off); the run "
                                         "keeps the weights of the best evaluation.")
    load_best: bool = _f(False, "End the run with the weights of the best evaluation, not the last step.")
    # --- LoRA
    lora_rank: int = _f(16, "LoRA rank r.")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "Dropout on the LoRA input.")
    lora_target: str | list[str] = _f("all-linear", "Modules to adapt: all-linear or names like q_proj,v_proj.")
    # --- QLoRA (method=qlora; bitsandbytes, CPU or CUDA)
    quantization_bit: int = _f(4, "Base weights in 4-bit or 8-bit.", (4, 8))
    quantization_type: str = _f("nf4", "4-bit data type.", ("nf4", "fp4"))
    double_quantization: bool = _f(True, "Also quantize the 4-bit scales (saves ~0.4 bit per weight).")
    # --- preference stages
    beta: float = _f(0.1, "stage=dpo: strength of the pull towards the reference model; stage=orpo: weight of the "
                          "preference (odds ratio) term next to the chosen answer's loss.")
    # --- freeze
    freeze_layers: int = _f(2, "method=freeze: train only the last N decoder layers.")
    freeze_modules: str = _f("", "method=freeze: also train these modules, e.g. lm_head,norm.")

    def validate(self) -> "TrainConfig":
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                allowed = ", ".join(map(str, choices))
                hint = f" ({f.metadata['unknown']})" if f.metadata.get("unknown") else ""
                raise ConfigError(f"config: {f.name}={value!r} is not allowed; choose one of {allowed}{hint}")
            if isinstance(value, float) and not math.isfinite(value):  # nan/inf never mean anything here
                raise ConfigError(f"config: {f.name}={value} is not a finite number; give a real value")
        positive = ("cutoff_len", "per_device_batch_size", "gradient_accumulation_steps", "lora_rank", "lora_alpha",
                    "logging_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("freeze_layers", "max_steps", "eval_steps", "save_steps", "warmup_steps", "max_samples",
                     "max_tokens_per_batch", "save_total_limit", "early_stopping_patience", "weight_decay",
                     "max_grad_norm", "num_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:  # numpy and CUDA seeds are 32-bit
            raise ConfigError(f"config: seed must be in [0, 2**32), got {self.seed}")
        if self.beta <= 0:
            raise ConfigError(f"config: beta must be > 0, got {self.beta}")
        if self.learning_rate <= 0:
            raise ConfigError(f"config: learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"config: warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"config: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.val_size < 0 or (self.val_size >= 1 and self.val_size != int(self.val_size)):
            raise ConfigError(f"config: val_size must be a fraction in [0, 1) or a whole row count, "
                              f"got {self.val_size}")
        if self.max_steps == 0 and self.num_epochs <= 0:
            raise ConfigError("config: set max_steps > 0 or num_epochs > 0")
        if self.max_tokens_per_batch and self.max_tokens_per_batch < self.cutoff_len:
            raise ConfigError(
                f"config: max_tokens_per_batch={self.max_tokens_per_batch} is below cutoff_len={self.cutoff_len}; "
                "raise it or lower cutoff_len (one row must fit in a micro-batch)"
            )
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"config: device={self.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        if self.load_best and not (self.val_dataset or self.val_size):
            raise ConfigError("config: load_best=true needs validation data; set val_size or val_dataset")
        if self.early_stopping_patience and not (self.eval_steps and (self.val_dataset or self.val_size)):
            raise ConfigError("config: early_stopping_patience needs evaluations during training; set eval_steps and "
                              "val_size (or val_dataset)")
        for name in ("nproc", "nnodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"config: node_rank must be in 0..{self.nnodes - 1} (nnodes={self.nnodes}), "
                              f"got {self.node_rank}")
        if not 0 < self.master_port < 65536:
            raise ConfigError(f"config: master_port must be a TCP port (1-65535), got {self.master_port}")
        if not self.dataset:
            raise ConfigError("config: dataset is required, e.g. dataset=examples/data/haneul_faq.jsonl")
        return self

    @property
    def rows_per_step(self) -> int:
        """Rows per optimizer step over all processes: per process x accumulation x processes."""
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.world_size

    @property
    def world_size(self) -> int:
        """Processes training together: from the launcher when there is one (torchrun, accelerate launch),
        else nproc x nnodes."""
        import os

        return int(os.environ.get("WORLD_SIZE") or self.nproc * self.nnodes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config; `tunesmith train PATH` re-runs it exactly."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        Path(path).write_text(text, encoding="utf-8")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check `value` against the field's annotation, converting the harmless cases (int -> float, '1e-4')."""
    hint = typing.get_type_hints(TrainConfig)[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if isinstance(value, str) and value.strip() == "" and type(None) in options:
        return None
    for opt in options:
        origin = typing.get_origin(opt) or opt
        if opt is type(None) and value is None:
            return None
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if origin is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if origin is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if origin is dict and isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    wanted = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"{where}{name}: expected {wanted}, got {value!r}")


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t) or t
    return {bool: "true/false", int: "an integer", float: "a number", str: "text", list: "a list",
            dict: "a mapping", type(None): "empty"}.get(origin, str(t))


def _check_key(key: str, where: str) -> None:
    if key in SECRET_KEYS:
        raise ConfigError(f"{where}{key}: secrets never go in a config; export HF_TOKEN in the environment instead")
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else "; `tunesmith train --help` lists the keys"
        raise ConfigError(f"{where}unknown key '{key}'{hint}")


def _yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping and remember the line of each top-level key for error messages."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the config's YAML file") from None
    except UnicodeDecodeError as e:
        line = text_line_of(path, e.start)
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror or e}); check the path and "
                          "permissions") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config; write flat key: value lines") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping of key: value lines")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    return data, lines


def text_line_of(path: Path, offset: int) -> int:
    """The 1-based line that byte `offset` of a file lies on (for errors about undecodable bytes)."""
    return path.read_bytes()[:offset].count(b"\n") + 1


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}': write it as key=value, e.g. learning_rate=1e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        value = raw
    # YAML reads 1e-4 as a string (no dot); numbers in text stay text unless the field wants a number.
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        data, lines = _yaml_with_lines(path)
        if llamafactory_v1.is_v1(data):
            data, lines = llamafactory_v1.translate(data, lines, path, set(FIELDS) | SECRET_KEYS)
        elif llamafactory.is_llamafactory(data):
            data, lines = llamafactory.translate(data, lines, path, set(FIELDS) | SECRET_KEYS)
        for key, value in data.items():
            where = f"{path}:{lines.get(key, '?')}: "
            _check_key(str(key), where)
            values[key] = _coerce(key, value, where)
    for item in overrides:
        key, value = parse_override(item)
        if key not in FIELDS and key in llamafactory.RENAMED:  # LLaMA-Factory's name, e.g. num_train_epochs=1
            key = llamafactory.RENAMED[key]
        _check_key(key, "override: ")
        values[key] = _coerce(key, value, "override: ")
    return TrainConfig(**values).validate()


def describe_keys() -> str:
    """The key reference shown by `tunesmith train --help`."""
    rows = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        choices = f.metadata.get("choices")
        extra = f" [{'|'.join(map(str, choices))}]" if choices else ""
        rows.append(f"  {f.name:<28} {f.metadata['help']}{extra} (default: {default!r})")
    return "\n".join(rows)
