"""bitsandbytes 4-bit / 8-bit Hugging Face checkpoints of a merged model.

transformers quantizes only while loading, so the merged model is first saved plainly to a scratch folder and then
loaded from it with a BitsAndBytesConfig; `save_pretrained` of that model writes packed weights plus the
quantization config, and `from_pretrained(out)` restores the quantized model with no extra arguments. 4-bit uses the
same settings as QLoRA training (nf4, double quantization); bitsandbytes runs this on CPU and CUDA.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tunesmith.export.merge import save_hf
from tunesmith.export.naming import ExportError


def save_bnb(model, tokenizer, out: Path, bits: int, max_shard_size: str | None, reward: bool) -> list[Path]:
    from tunesmith.model.loader import model_class, quantization_config

    if bits not in (4, 8):
        raise ExportError(f"--bits {bits}: choose 4 or 8")
    scratch = out / ".merged-unquantized"
    shutil.rmtree(scratch, ignore_errors=True)
    save_hf(model, tokenizer, scratch, None)
    compute = model.dtype if model.dtype in (torch.bfloat16, torch.float16) else torch.float32
    del model
    config = quantization_config(bits, "nf4", True, dtype=compute)
    if reward:  # the one-scalar score head is tiny and every bit of it is the output; keep it in full precision
        config.llm_int8_skip_modules = ["score"]
    cls = model_class("score" if reward else "causal")
    kwargs = {"num_labels": 1} if reward else {}
    try:
        quantized = cls.from_pretrained(scratch, quantization_config=config, dtype=compute,
                                        device_map={"": "cuda" if torch.cuda.is_available() else "cpu"}, **kwargs)
        return save_hf(quantized, tokenizer, out, max_shard_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
