"""Merge a run into one plain model and save it as size-limited safetensors shards.

Adapters merge into the base in the base's own dtype (peft `merge_and_unload`), so the export is exactly as large
as the base and needs no peft to load. The base must hold real weights: merging into bitsandbytes-rounded weights
would bake the rounding in, so a quantized base is refused. QLoRA runs are fine as they are: their adapter names the
unquantized base folder, and that is what gets loaded here.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

from tunesmith.export.naming import ExportError, public_name
from tunesmith.run import RunDir, load_run

log = logging.getLogger(__name__)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
    """'500MB' -> 500_000_000 (decimal units like the hub; KiB/MiB/GiB are binary)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(text), flags=re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise ExportError(f"--max-shard-size {text!r}: write a number and a unit, e.g. 500MB or 2GB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])


def human(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def quantization_of(source: str) -> str | None:
    """'bitsandbytes 4-bit' (or another method) when the model folder/hub id holds quantized weights, else None."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except OSError:
        return None  # from_pretrained reports a missing model itself, with the loader's message
    q = getattr(config, "quantization_config", None)
    if not q:
        return None
    q = q if isinstance(q, dict) else q.to_dict()
    method = q.get("quant_method", "unknown")
    if method == "gguf":  # the loader's de-quantized GGUF cache: plain floats despite a stale entry
        return None
    bits = 4 if q.get("load_in_4bit") else 8 if q.get("load_in_8bit") else q.get("bits")
    return f"{method} {bits}-bit" if bits else str(method)


def _refuse_quantized(source: str, what: str) -> None:
    quant = quantization_of(source)
    if quant:
        raise ExportError(f"{what} {public_name(source)} is quantized ({quant}); merging would bake the rounding in - "
                          "reload the base in bf16/fp32 and merge: pass --base with the unquantized model")


def load_merged(run: RunDir):
    """(model, tokenizer): the run as one plain transformers model in eval mode, on the CPU in the weights' own dtype
    (merging is memory-bound, not compute-bound), plus the run's tokenizer (it carries the training template)."""
    if run.adapter is None:
        _refuse_quantized(run.weights, "the run's model")
    else:
        _refuse_quantized(run.base, "the base model")
        _check_vocab(run)
        if run.method == "qlora":
            log.info("method=qlora: merging into the unquantized base %s (the adapter learned on its 4-bit "
                     "rounding, so outputs differ slightly from the QLoRA model)", public_name(run.base))
    # modules_to_save (the reward head) come back trained; merge_and_unload folds LoRA/DoRA into the weights.
    loaded = load_run(str(run.path), device="cpu", dtype="checkpoint", base=run.base_override)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config._name_or_path = public_name(run.base or run.path.name)  # never a local path in saved files
    return model.eval(), tokenizer


def _check_vocab(run: RunDir) -> None:
    """Before anything loads: a tokenizer larger than the base's embedding means --base is the wrong model."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        rows = getattr(AutoConfig.from_pretrained(run.base).get_text_config(), "vocab_size", None)
    except OSError:
        return  # load_run reports a missing base with the loader's message
    tokens = len(AutoTokenizer.from_pretrained(run.tokenizer_source))
    if rows is not None and tokens > rows:
        raise ExportError(f"{run.path}: the tokenizer has {tokens} tokens but the base {public_name(run.base)} has "
                          f"{rows} embeddings; is --base the model the run used?")


def generation_config(model, tokenizer):
    """The base's generation settings with the run's end-of-answer token first (what the run taught it to emit)."""
    from transformers import GenerationConfig

    current = getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)
    config = GenerationConfig.from_dict(current.to_dict())
    others = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    eos = [tokenizer.eos_token_id] + [i for i in others if i is not None and i != tokenizer.eos_token_id]
    config.eos_token_id = eos[0] if len(eos) == 1 else eos
    config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    return config


def _header_allowance(state: dict) -> int:
    """Bytes the safetensors JSON headers can take: transformers limits tensor bytes only, but the limit is a
    promise about files (a hub's or filesystem's cap), so the headers are reserved out of it."""
    return 1024 + sum(len(name) + 128 for name in state)


def save_hf(model, tokenizer, out: Path, max_shard_size: str | int | None) -> list[Path]:
    """Save weights (shards <= max_shard_size), config, generation config and tokenizer; return the shard files."""
    state = model.state_dict()
    limit = parse_size(max_shard_size) if max_shard_size else None
    if limit is not None:
        name, tensor = max(state.items(), key=lambda kv: kv[1].numel() * kv[1].element_size())
        largest = tensor.numel() * tensor.element_size() + len(name) + 1024
        if largest > limit:
            at_least = math.ceil(largest / 10**6)
            raise ExportError(f"--max-shard-size {max_shard_size} is smaller than the largest tensor ({name}, "
                              f"{human(largest)}); tensors are never split, use at least {at_least}MB")
        budget = max(limit - _header_allowance(state), largest)
    out.mkdir(parents=True, exist_ok=True)
    if model.can_generate():  # reward models score, they do not generate
        model.generation_config = generation_config(model, tokenizer)
    model.save_pretrained(out, max_shard_size=budget if limit is not None else "50GB")
    tokenizer.save_pretrained(out)
    shards = sorted(out.glob("model*.safetensors"))
    too_big = [p for p in shards if limit is not None and p.stat().st_size > limit]
    if too_big:  # the allowance above is generous; this only guards against a future transformers change
        raise ExportError(f"{too_big[0].name} is {human(too_big[0].stat().st_size)}, over --max-shard-size "
                          f"{max_shard_size}; raise the limit")
    return shards


def check_complete(out: Path) -> None:
    """Every weight file the index names exists (catches a half-written export before anyone uploads it)."""
    index = out / "model.safetensors.index.json"
    if index.exists():
        missing = {f for f in json.loads(index.read_text())["weight_map"].values() if not (out / f).exists()}
        if missing:
            raise ExportError(f"{out}: shards {sorted(missing)[:2]} are missing; export again")
    elif not (out / "model.safetensors").exists():
        raise ExportError(f"{out}: no weights were written; export again")
