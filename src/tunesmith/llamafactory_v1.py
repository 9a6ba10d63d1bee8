"""LLaMA-Factory's v1 configs (`USE_V1=1 llamafactory-cli sft|dpo|rm X.yaml`, its examples/v1), read as they are.

v1 nests what v0 spelled flat: `peft_config: {name: lora, r, lora_alpha, ...}`, `quant_config: {name: bnb,
quantization_bit}`, and `train_dataset` names a dataset YAML (`{name: {path, source, converter, split, size}}`)
or a file or hub id. Its rows are v1's own messages (content as [{type: text, value}] parts), which the data
reader takes as they are, or the alpaca / sharegpt / pair rows its converters read, which it detects. As for v0
(`llamafactory`), each key is translated, dropped and named in one log line, or refused by name; where v1 defaults
differently from tunesmith, a config that leaves the key out gets v1's value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.llamafactory import Translation, read_yaml
from tunesmith.once import log_once

log = logging.getLogger("tunesmith")

# Keys only a v1 config has; one of them makes a file one.
MARKERS = {"model_class", "peft_config", "quant_config", "kernel_config", "dist_config", "init_config",
           "train_dataset", "micro_batch_size", "global_batch_size", "batching_strategy", "optim_config",
           "lr_scheduler_config", "enable_activation_checkpointing"}
RENAMED = {"micro_batch_size": "per_device_batch_size", "num_train_epochs": "num_epochs", "pref_beta": "beta",
           "eval_dataset": "val_dataset", "train_dataset": "dataset", "enable_activation_checkpointing":
           "gradient_checkpointing", "resume_from_checkpoint": "resume"}
SAME = {"model", "output_dir", "cutoff_len", "learning_rate", "max_steps", "max_grad_norm", "seed", "save_steps",
        "save_total_limit", "logging_steps"}
HANDLED = {"model_class", "peft_config", "quant_config", "dist_config", "global_batch_size", "bf16", "pref_loss",
           "cp_size", "dp_size", "mp_replicate_size", "mp_shard_size", "optim_config", "lr_scheduler_config"}
NOT_NEEDED = {
    "kernel_config": "kernels are chosen per device", "flash_attn": "the attention kernel is chosen per device",
    "batching_strategy": "rows are always packed, and never attend to each other", "batching_workers": "the same",
    "sample_backend": "`tunesmith chat` and `serve` decode", "max_new_tokens": "set it in chat and serve",
    "trust_remote_code": "no model code from the hub is run", "init_config": "weights load once per process",
    "dist_timeout": "no such timeout", "full_determinism": "seed decides", "save_ckpt_as_hf": "checkpoints are "
    "always resumable", "cp_mode": "no context parallelism",
}
# v1's defaults where tunesmith's differ: its trainer runs torch's AdamW (weight decay 0.01) at a constant rate, one
# row per micro-batch and no accumulation (global_batch_size defaults to micro_batch_size per process).
DEFAULTS = {"learning_rate": 1e-4, "lr_scheduler": "constant", "per_device_batch_size": 1,
            "gradient_accumulation_steps": 1, "cutoff_len": 2048, "weight_decay": 0.01}
LORA = {"r": ("lora_rank", 8), "lora_alpha": ("lora_alpha", 16), "lora_dropout": ("lora_dropout", 0.05),
        "target_modules": ("lora_target", "all")}
FREEZE = {"freeze_trainable_layers": ("freeze_layers", 2), "freeze_extra_modules": ("freeze_modules", "")}


def is_v1(data: dict) -> bool:
    return any(key in data for key in MARKERS)


def translate(data: dict[str, Any], lines: dict[str, int], path: Path,
              own_keys: set[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """v1 keys -> tunesmith keys (and the YAML line each came from). `own_keys` (tunesmith's) pass through."""
    t = Translation(path, lines)
    out, where, put = t.out, t.where, t.put
    for key in t.rename(data, RENAMED, SAME | own_keys):
        if key not in NOT_NEEDED and key not in HANDLED:
            raise ConfigError(f"{where(key)}LLaMA-Factory v1 key '{key}' has no tunesmith counterpart; remove it "
                              "(`tunesmith train --help` lists the keys)")
    for key in [key for key, value in out.items() if value is None and key != "max_steps"]:
        del out[key]  # null: not set
    if data.get("model_class", "llm") != "llm":
        raise ConfigError(f"{where('model_class')}model_class {data['model_class']}: tunesmith trains causal language "
                          "models (llm); a reward model is stage=rm")
    for key in ("cp_size", "dp_size", "mp_replicate_size", "mp_shard_size"):
        if data.get(key) not in (None, 1):
            raise ConfigError(f"{where(key)}{key} {data[key]}: tunesmith parallelises by data only (distributed=ddp, "
                              "fsdp or deepspeed, nproc=N); remove it")
    notes = []
    out |= _method(data, where, put)
    defaulted = {key: value for key, value in DEFAULTS.items() if key not in out}
    out |= defaulted
    if data.get("global_batch_size") is not None:
        micro, total = out["per_device_batch_size"], data["global_batch_size"]
        if not (isinstance(total, int) and isinstance(micro, int) and micro > 0 and total % micro == 0 and total > 0):
            raise ConfigError(f"{where('global_batch_size')}global_batch_size {total} must be a multiple of "
                              f"micro_batch_size {micro}")
        put("gradient_accumulation_steps", total // micro, "global_batch_size")
        defaulted.pop("gradient_accumulation_steps", None)
    if "bf16" in data:
        put("dtype", "bf16" if data["bf16"] is True else "fp32", "bf16")
    else:
        notes.append("bf16 left out: tunesmith picks the precision for this device (dtype=auto)")
    if data.get("max_steps") is None and "max_steps" in out:  # v1's "not set"
        out["max_steps"] = 0
    if data.get("pref_loss") == "orpo":
        put("stage", "orpo", "pref_loss")
    elif data.get("pref_loss") not in (None, "sigmoid"):
        raise ConfigError(f"{where('pref_loss')}pref_loss {data['pref_loss']}: tunesmith's dpo uses the sigmoid "
                          "(original DPO) loss, and ORPO is stage=orpo; remove pref_loss")
    dist = _plugin(data, "dist_config", where)
    if dist:
        if dist["name"] not in ("fsdp2", "deepspeed"):
            raise ConfigError(f"{where('dist_config')}dist_config {dist['name']}: tunesmith shards with fsdp (FSDP2) "
                              "or deepspeed; use distributed=fsdp")
        put("distributed", "fsdp" if dist["name"] == "fsdp2" else "deepspeed", "dist_config")
        if dist.get("config_file"):
            put("deepspeed", dist["config_file"], "dist_config")
    for key in ("optim_config", "lr_scheduler_config"):
        plugin = _plugin(data, key, where)
        if plugin:
            raise ConfigError(f"{where(key)}{key} {plugin['name']}: tunesmith's optimizer (adamw, adamw_8bit, sgd) "
                              f"and schedule (lr_scheduler=cosine, ...) are plain keys; remove {key}")
    if data.get("resume_from_checkpoint") == "auto":
        out["resume"] = True
    for key in ("dataset", "val_dataset"):
        if isinstance(out.get(key), str) and out[key].lower().endswith((".yaml", ".yml")):
            source = "eval_dataset" if key == "val_dataset" else "train_dataset"
            files, size, pairs = _dataset_yaml(out[key], path, where(source), notes)
            out[key] = files if len(files) > 1 else files[0]
            if size and key == "dataset" and "max_samples" not in out:
                put("max_samples", size, source)
            if pairs and "stage" not in out:  # `llamafactory-cli dpo` says it on the command line
                put("stage", "dpo", source)
                notes.append("preference pairs (converter: pair) -> stage=dpo")
    if defaulted:
        notes.append("LLaMA-Factory v1's defaults for keys it leaves out: "
                     + ", ".join(f"{key}={value}" for key, value in defaulted.items()))
    dropped = sorted(k for k in data if k in NOT_NEEDED)
    if dropped:
        notes.append(f"not needed here: {', '.join(f'{k} ({NOT_NEEDED[k]})' for k in dropped)}")
    log_once(log, f"{path}: read as a LLaMA-Factory v1 config ({'; '.join(notes)})")
    return out, t.came_from


def _plugin(data: dict, key: str, where) -> dict | None:
    """A v1 plugin setting ({name: ..., ...}; a bare name is short for {name: it}), or None when not set."""
    value = data.get(key)
    if value is None:
        return None
    value = {"name": value} if isinstance(value, str) else value
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"{where(key)}{key} needs a name, e.g. {key}: {{name: ...}}")
    return value


def _method(data: dict, where, put) -> dict[str, Any]:
    """peft_config + quant_config -> method and its settings (v1 trains every weight when peft_config is unset)."""
    peft, quant = _plugin(data, "peft_config", where), _plugin(data, "quant_config", where)
    settings: dict[str, Any] = {}
    name = peft["name"] if peft else "full"
    table = {"lora": LORA, "freeze": FREEZE, "full": {}}.get(name)
    if table is None:
        raise ConfigError(f"{where('peft_config')}peft_config {name}: tunesmith has lora and freeze (and full, dora, "
                          "qlora)")
    extra = sorted(set(peft or {}) - set(table) - {"name", "use_dora", "freeze_trainable_modules"})
    if extra:
        raise ConfigError(f"{where('peft_config')}peft_config key '{extra[0]}' has no tunesmith counterpart"
                          + ("; merging a run is `tunesmith export RUN_DIR --out DIR`" if "export_dir" in extra
                             else "; remove it"))
    if (peft or {}).get("freeze_trainable_modules", "all") != "all":
        raise ConfigError(f"{where('peft_config')}freeze_trainable_modules: tunesmith's freeze method trains whole "
                          "layers (freeze_trainable_layers); remove it")
    for theirs, (ours, default) in table.items():
        value = (peft or {}).get(theirs)
        settings[ours] = default if value is None else value
    if settings.get("lora_target") == "all":
        settings["lora_target"] = "all-linear"
    if isinstance(settings.get("freeze_modules"), list):
        settings["freeze_modules"] = ",".join(settings["freeze_modules"])
    method = "dora" if (peft or {}).get("use_dora") else name
    if quant:
        if quant["name"] not in ("bnb", "auto") or name != "lora":
            raise ConfigError(f"{where('quant_config')}quant_config {quant['name']}: tunesmith quantizes LoRA runs "
                              "with bitsandbytes (name: bnb)")
        method, settings["quantization_bit"] = "qlora", quant.get("quantization_bit", 4)
    put("method", method, "peft_config")
    return settings


def _dataset_yaml(name: str, config_path: Path, where: str, notes: list[str]) -> tuple[list[str], int | None, bool]:
    """A v1 dataset YAML -> (the files or hub ids it names, the one dataset's `size` if it is alone, whether its
    rows are preference pairs)."""
    path = next((p for p in (Path(name), config_path.parent / name) if p.is_file()), None)
    if path is None:
        raise ConfigError(f"{where}dataset list {name} not found (looked in the current folder and next to the "
                          "config); run from the LLaMA-Factory folder or give the data file itself")
    info = read_yaml(path)
    if not info or not all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in info.values()):
        raise ConfigError(f"{path}: expected datasets as `name: {{path: ..., source: local|hf_hub, split: ...}}`")
    found, sizes = [], {}
    pairs = any(entry.get("converter") == "pair" for entry in info.values())
    for key, entry in info.items():
        source = entry.get("source", "hf_hub")
        if source == "local":
            local = Path(entry["path"])
            candidates = (local, path.parent / local, path.parent.parent / local)
            found.append(str(next((p for p in candidates if p.exists()), local)))
        elif source == "hf_hub":
            split = entry.get("split", "train")
            found.append(entry["path"] + (f":{split}" if split != "train" else ""))
        else:
            raise ConfigError(f"{path}: '{key}' has source {source}; tunesmith reads local files and hub datasets")
        if entry.get("size") is not None:
            sizes[key] = entry["size"]
        if entry.get("weight") not in (None, 1, 1.0):
            notes.append(f"{key}: weight {entry['weight']} not applied (each row is read once)")
    if sizes and len(info) == 1:
        notes.append(f"size {next(iter(sizes.values()))} -> max_samples (the first rows; LLaMA-Factory draws them "
                     "at random)")
        return found, next(iter(sizes.values())), pairs
    if sizes:
        notes.append(f"size not applied with several datasets ({', '.join(sizes)}): every row is read")
    return found, None, pairs
