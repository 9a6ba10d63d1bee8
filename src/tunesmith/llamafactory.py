"""LLaMA-Factory's files, read as they are: a training YAML (`llamafactory-cli train llama3_lora_sft.yaml`) becomes
tunesmith's keys, and its dataset names are looked up in LLaMA-Factory's `dataset_info.json`.

Whoever learnt fine-tuning on LLaMA-Factory brings its configs. Each of their keys is translated, dropped because
tunesmith does it without being asked (packing, loss plots, worker counts: named in one log line), or refused by name
with the tunesmith way to get it. Nothing is ignored in silence.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.once import log_once

log = logging.getLogger("tunesmith")

# Keys only LLaMA-Factory's YAML has; one of them makes a file a LLaMA-Factory config.
MARKERS = {"model_name_or_path", "finetuning_type", "per_device_train_batch_size", "num_train_epochs",
           "lr_scheduler_type", "dataset_dir", "do_train"}
RENAMED = {"model_name_or_path": "model", "per_device_train_batch_size": "per_device_batch_size",
           "num_train_epochs": "num_epochs", "lr_scheduler_type": "lr_scheduler", "pref_beta": "beta",
           "freeze_trainable_layers": "freeze_layers", "freeze_extra_modules": "freeze_modules", "optim": "optimizer",
           "eval_dataset": "val_dataset"}
SAME = {"stage", "template", "cutoff_len", "max_samples", "val_size", "output_dir", "overwrite_output_dir",
        "logging_steps", "save_steps", "save_total_limit", "eval_steps", "gradient_accumulation_steps", "learning_rate",
        "max_steps", "warmup_steps", "warmup_ratio", "weight_decay", "max_grad_norm", "seed", "lora_rank",
        "lora_alpha", "lora_dropout", "lora_target", "quantization_bit", "quantization_type", "double_quantization",
        "train_on_prompt", "deepspeed", "dataset"}
# Translated below, with the keys they combine with.
HANDLED = {"finetuning_type", "use_dora", "bf16", "fp16", "pure_bf16", "quantization_method", "dataset_dir",
           "freeze_trainable_modules", "resume_from_checkpoint", "pref_loss", "do_train"}
# Things tunesmith does on its own, or that only tune LLaMA-Factory's own machinery: dropped, and said so.
NOT_NEEDED = {
    "plot_loss": "loss plots are always written", "report_to": "TensorBoard logs are always written",
    "logging_dir": "logs go in output_dir", "run_name": "the run is output_dir",
    "overwrite_cache": "no tokenized cache", "preprocessing_num_workers": "tokenizing needs no workers",
    "dataloader_num_workers": "batches are built in the training process", "ddp_timeout": "no such timeout",
    "packing": "rows are always packed, and never attend to each other", "neat_packing": "the same",
    "flash_attn": "the attention kernel is chosen per device", "save_only_model": "checkpoints are always resumable",
    "trust_remote_code": "no model code from the hub is run", "include_num_input_tokens_seen": "tokens are logged",
    "per_device_eval_batch_size": "evaluation packs rows like training", "eval_strategy": "eval_steps decides",
    "evaluation_strategy": "eval_steps decides", "save_strategy": "save_steps decides",
    "enable_liger_kernel": "not integrated", "use_unsloth": "tunesmith has its own fast path",
    "tokenized_path": "rows are tokenized in each run, in seconds", "use_reentrant_gc": "gradient_checkpointing decides",
    "gradient_checkpointing_kwargs": "gradient_checkpointing decides",
}
# Where LLaMA-Factory (or transformers' TrainingArguments under it) and tunesmith default differently, a config that
# leaves the key out gets LLaMA-Factory's value: the same run as there. (lora_alpha: lora_rank x 2, set below.)
DEFAULTS = {"lora_rank": 8, "cutoff_len": 2048, "learning_rate": 5e-5, "per_device_batch_size": 8,
            "gradient_accumulation_steps": 1, "lr_scheduler": "linear"}
MEDIA = ("image", "video", "audio", "vision", "multi_modal")  # in the keys of multimodal training
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")  # transformers' names, tunesmith's too
OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw_8bit": "adamw_8bit",
              "adamw_bnb_8bit": "adamw_8bit", "paged_adamw_8bit": "paged_adamw_8bit", "paged_adamw_32bit":
              "paged_adamw", "sgd": "sgd"}
# LLaMA-Factory's dataset_info columns -> tunesmith's canonical names (see data/formats.py).
COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": "history", "system": "system",
           "chosen": "chosen", "rejected": "rejected"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "system_tag": "system"}


def is_llamafactory(data: dict) -> bool:
    return any(key in data for key in MARKERS)


class Translation:
    """A config's keys becoming tunesmith's (`out`), each remembering the YAML line it came from (`came_from`), for
    error messages that name the line. Shared by LLaMA-Factory's v0 and v1 configs (llamafactory_v1)."""

    def __init__(self, path: Path, lines: dict[str, int]):
        self.path, self.lines = path, lines
        self.out: dict[str, Any] = {}
        self.came_from: dict[str, int] = {}

    def where(self, key: str) -> str:
        return f"{self.path}:{self.lines.get(key, '?')}: "

    def put(self, key: str, value: Any, source: str) -> None:
        self.out[key], self.came_from[key] = value, self.lines.get(source, 0)

    def rename(self, data: dict[str, Any], renamed: dict[str, str], same: set[str]) -> list[str]:
        """Take the keys that map one to one (`renamed`, `same`); return the others, for the caller to judge."""
        rest = []
        for key, value in data.items():
            if key in renamed:
                self.put(renamed[key], value, key)
            elif key in same:
                self.put(key, value, key)
            else:
                rest.append(key)
        return rest


def translate(data: dict[str, Any], lines: dict[str, int], path: Path,
              own_keys: set[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """LLaMA-Factory keys -> tunesmith keys (and the YAML line each came from, for error messages). `own_keys`
    (tunesmith's) pass through as they are, for config.py to check."""
    t = Translation(path, lines)
    out, where, put = t.out, t.where, t.put
    for key in t.rename(data, RENAMED, SAME | own_keys):
        if any(word in key for word in MEDIA):
            raise ConfigError(f"{where(key)}{key}: tunesmith trains on text; remove the image, video and audio "
                              "settings (and such datasets)")
        elif key not in NOT_NEEDED and key not in HANDLED:
            raise ConfigError(f"{where(key)}LLaMA-Factory key '{key}' has no tunesmith counterpart; remove it "
                              "(`tunesmith train --help` lists the keys)")
    _refuse_what_cannot_be_honoured(data, where)
    defaulted = {key: value for key, value in DEFAULTS.items() if key not in out}
    out |= defaulted
    if "lora_alpha" not in out and isinstance(out["lora_rank"], int):  # (a rank that is no integer: config says)
        out["lora_alpha"] = defaulted["lora_alpha"] = 2 * out["lora_rank"]
    method = _method(data, where)
    if method:
        put("method", method, "finetuning_type")
    dtype = next((d for d in ("pure_bf16", "bf16", "fp16") if data.get(d) is True), None)
    if dtype:
        put("dtype", dtype, dtype)
    if data.get("lora_target") == "all":
        out["lora_target"] = "all-linear"
    if out.get("lr_scheduler", "cosine") not in SCHEDULERS:
        raise ConfigError(f"{where('lr_scheduler_type')}lr_scheduler_type {out['lr_scheduler']}: tunesmith has "
                          f"{', '.join(SCHEDULERS)}")
    if "optim" in data:
        if data["optim"] not in OPTIMIZERS:
            raise ConfigError(f"{where('optim')}optim {data['optim']}: use one of {', '.join(OPTIMIZERS)}")
        out["optimizer"] = OPTIMIZERS[data["optim"]]
    if data.get("max_steps") == -1:  # transformers' "not set"
        out["max_steps"] = 0
    if data.get("resume_from_checkpoint"):
        put("resume", data["resume_from_checkpoint"], "resume_from_checkpoint")
    if isinstance(out.get("deepspeed"), str):
        out["distributed"] = "deepspeed"
    if data.get("pref_loss") == "orpo" and out.get("stage") == "dpo":  # ORPO is its own stage here
        put("stage", "orpo", "pref_loss")
    notes = []
    if data.get("template") is not None and not _known_template(data["template"]):
        out["template"] = "auto"  # the tokenizer's own chat template, which LLaMA-Factory's named ones copy
        notes.append(f"template {data['template']} -> auto, the model's own chat template")
    for key in ("dataset", "val_dataset"):
        if out.get(key):
            source = "eval_dataset" if key == "val_dataset" else "dataset"
            datasets, columns, fmt = _datasets(out[key], data.get("dataset_dir") or "data", path,
                                               where(source), out.get("stage", "sft"))
            out[key] = datasets if len(datasets) > 1 else datasets[0]
            if columns and out.get("columns", columns) != columns:
                raise ConfigError(f"{where(source)}the datasets name different columns; train them in one run by "
                                  "giving them the same column names")
            if columns:
                out["columns"] = columns
            if fmt:
                out["dataset_format"] = fmt
    if defaulted:
        notes.append("LLaMA-Factory's defaults for keys it leaves out: "
                     + ", ".join(f"{key}={value}" for key, value in defaulted.items()))
    if data.get("max_samples") and isinstance(out.get("dataset"), list):
        notes.append("max_samples counts the datasets together here, not each as LLaMA-Factory does")
    dropped = sorted(k for k in data if k in NOT_NEEDED)
    if dropped:
        notes.append(f"not needed here: {', '.join(f'{k} ({NOT_NEEDED[k]})' for k in dropped)}")
    log_once(log, f"{path}: read as a LLaMA-Factory config" + (f" ({'; '.join(notes)})" if notes else ""))
    return out, t.came_from


def _refuse_what_cannot_be_honoured(data: dict, where) -> None:
    if data.get("do_train") is False:
        raise ConfigError(f"{where('do_train')}do_train: false: `tunesmith train` trains; evaluate a run with "
                          "`tunesmith eval`, predict with `tunesmith chat` or `tunesmith eval`")
    if data.get("stage") in ("kto", "ppo"):
        raise ConfigError(f"{where('stage')}stage {data['stage']} is LLaMA-Factory's; tunesmith trains sft, pt, rm, "
                          "dpo and orpo (dpo or orpo from the same preference pairs)")
    if data.get("pref_loss") not in (None, "sigmoid", "orpo"):
        raise ConfigError(f"{where('pref_loss')}pref_loss {data['pref_loss']}: tunesmith's dpo uses the sigmoid "
                          "(original DPO) loss, and ORPO is stage=orpo; remove pref_loss")
    if data.get("quantization_method") not in (None, "bnb", "bitsandbytes"):
        raise ConfigError(f"{where('quantization_method')}quantization_method {data['quantization_method']}: "
                          "tunesmith quantizes with bitsandbytes; remove quantization_method")
    if data.get("freeze_trainable_modules") not in (None, "all"):
        raise ConfigError(f"{where('freeze_trainable_modules')}freeze_trainable_modules: tunesmith's freeze method "
                          "trains whole layers (freeze_layers); remove it")
    if isinstance(data.get("freeze_trainable_layers"), int) and data["freeze_trainable_layers"] < 0:
        raise ConfigError(f"{where('freeze_trainable_layers')}freeze_trainable_layers < 0 (the first layers): "
                          "tunesmith trains the last N layers; give a positive number")


def _method(data: dict, where) -> str | None:
    kind = data.get("finetuning_type")
    if kind not in (None, "lora", "full", "freeze"):
        raise ConfigError(f"{where('finetuning_type')}finetuning_type {kind}: tunesmith has lora, full and freeze "
                          "(and dora, qlora)")
    if data.get("quantization_bit") is not None and kind in (None, "lora"):
        return "qlora"
    if data.get("use_dora") and kind in (None, "lora"):
        return "dora"
    return kind


def _known_template(name: str) -> bool:
    from tunesmith.data.templates import FORMATS

    return name in FORMATS


def _datasets(names: Any, dataset_dir: str, config_path: Path, where: str,
              stage: str) -> tuple[list[str], dict[str, str], str | None]:
    """LLaMA-Factory dataset names -> (files or hub ids, the columns mapping, the format), via dataset_info.json.
    A name that is not in it passes through unchanged (a file or hub id, as tunesmith reads them)."""
    names = names.split(",") if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}dataset must be names separated by commas, or a list of names")
    names = [n.strip() for n in names]
    folder = next((d for d in (Path(dataset_dir), config_path.parent / dataset_dir)
                   if (d / "dataset_info.json").is_file()), None)
    info = _read_info(folder / "dataset_info.json") if folder else {}
    found, columns, fmt = [], {}, None
    for name in names:
        entry = info.get(name)
        if entry is None:
            if not folder and "/" not in name and not Path(name).suffix:
                raise ConfigError(f"{where}dataset '{name}' is a LLaMA-Factory dataset name, but no "
                                  f"{dataset_dir}/dataset_info.json was found (looked in the current folder and "
                                  "next to the config); run from the LLaMA-Factory folder, set dataset_dir, or give the "
                                  "data file itself")
            if folder and "/" not in name and not Path(name).suffix:
                raise ConfigError(f"{where}dataset '{name}' is not in {folder / 'dataset_info.json'}; add it there "
                                  "or give the data file itself")
            found.append(name)
            continue
        source, entry_columns, entry_fmt = _entry(name, entry, folder, stage)
        if found and (entry_columns != columns or entry_fmt != fmt):
            raise ConfigError(f"{where}datasets '{names[0]}' and '{name}' differ in format or columns; train them in "
                              "one run by giving them the same layout")
        found.append(source)
        columns, fmt = entry_columns, entry_fmt
    return found, columns, fmt


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read LLaMA-Factory's dataset list ({e}); fix the JSON") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{path}: expected a JSON object of dataset names")
    return info


def _entry(name: str, entry: Any, folder: Path, stage: str) -> tuple[str, dict[str, str], str | None]:
    info = folder / "dataset_info.json"
    if not isinstance(entry, dict):
        raise ConfigError(f"{info}: '{name}' must be an object with file_name or hf_hub_url")
    for key in ("ms_hub_url", "om_hub_url", "script_url", "subset", "folder"):
        if entry.get(key) and not (key in ("ms_hub_url", "om_hub_url") and (entry.get("hf_hub_url")
                                                                            or entry.get("file_name"))):
            raise ConfigError(f"{info}: '{name}' uses {key}, which tunesmith does not read; point file_name at the "
                              "data file or hf_hub_url at a hub dataset")
    if not all(isinstance(entry.get(key), (str, type(None))) for key in ("hf_hub_url", "file_name", "split")) or \
            not isinstance(entry.get("columns") or {}, dict) or not isinstance(entry.get("tags") or {}, dict):
        raise ConfigError(f"{info}: '{name}' has a value of the wrong type; file_name, hf_hub_url and split are text, "
                          "columns and tags are objects")
    if entry.get("hf_hub_url"):
        split = entry.get("split")
        source = entry["hf_hub_url"] + (f":{split}" if split and split != "train" else "")
    elif entry.get("file_name"):
        source = str(folder / entry["file_name"])
    else:
        raise ConfigError(f"{info}: '{name}' has neither file_name nor hf_hub_url")
    theirs = entry.get("columns") or {}
    unsupported = sorted(set(theirs) - set(COLUMNS) - {"messages"})
    if unsupported:
        raise ConfigError(f"{info}: '{name}' has a '{unsupported[0]}' column, which tunesmith does not train on "
                          "(no tools, images, audio, video or KTO tags); remove it from columns")
    sharegpt = entry.get("formatting") == "sharegpt"
    tags = {**DEFAULT_TAGS, **(entry.get("tags") or {})}
    openai = sharegpt and tags["role_tag"] == "role"
    if sharegpt and {k: tags[k] for k in DEFAULT_TAGS} not in (DEFAULT_TAGS, OPENAI_TAGS):
        raise ConfigError(f"{info}: '{name}' uses custom role tags {entry.get('tags')}; tunesmith reads from/value "
                          "(human, gpt, system) and role/content (user, assistant, system) turns")
    columns = {}
    for lf_name, column in theirs.items():
        canonical = COLUMNS.get(lf_name) or ("messages" if openai else "conversations")
        if stage == "pt" and lf_name == "prompt":
            canonical = "text"
        if column != canonical:
            columns[canonical] = column
    fmt = "preference" if entry.get("ranking") else ("openai" if openai else "sharegpt") if sharegpt else None
    return source, columns, fmt


# --- inference and merge configs (`llamafactory-cli chat|api|export X.yaml`) ---------------------------------------

INFERENCE_USED = {"model_name_or_path", "adapter_name_or_path", "export_dir", "export_size", "export_hub_model_id",
                  "export_quantization_bit"}


def read_yaml(path: Path) -> dict | None:
    """A YAML file's top-level mapping, or None when it is not one (the caller's own reader then says why)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def model_reference(path: Path) -> tuple[str, str | None] | None:
    """For a LLaMA-Factory inference or merge YAML: (what to open, its base model when that is an adapter); None for
    any other file. Decoding settings (template, infer_backend, dtypes) are tunesmith's own choice: said in a log line."""
    data = read_yaml(path)
    if data is None or "model_name_or_path" not in data or "stage" in data or "dataset" in data:
        return None
    model, adapters = data.get("model_name_or_path"), data.get("adapter_name_or_path")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{path}: model_name_or_path must name a model (a folder or hub id)")
    if adapters is not None and (not isinstance(adapters, str) or "," in adapters):
        raise ConfigError(f"{path}: adapter_name_or_path must be one adapter folder (tunesmith applies one adapter "
                          "per model; merge the others first)")
    unused = sorted(k for k in data if k not in INFERENCE_USED)
    log_once(log, f"{path}: read as a LLaMA-Factory config: {adapters or model}"
                  + (f" (tunesmith chooses {', '.join(unused)} itself)" if unused else ""))
    return (adapters, model) if adapters else (model, None)


def export_settings(path: Path) -> dict[str, Any]:
    """A LLaMA-Factory merge YAML's export_* keys as `tunesmith export` options (out, max_shard_size, bits,
    push_to_hub); {} for any other file."""
    data = read_yaml(path) if path.suffix.lower() in (".yaml", ".yml") else None
    if not data or "model_name_or_path" not in data:
        return {}
    size = data.get("export_size")
    settings = {"out": data.get("export_dir"), "max_shard_size": f"{size}GB" if size else None,
                "bits": data.get("export_quantization_bit"), "push_to_hub": data.get("export_hub_model_id")}
    if settings["bits"]:
        log_once(log, f"{path}: export_quantization_bit {settings['bits']} -> --bits {settings['bits']}: bitsandbytes "
                      "weights, no calibration data (LLaMA-Factory quantizes with GPTQ); for llama.cpp use --quant")
    return {k: v for k, v in settings.items() if v is not None}
