"""How much memory training will need, from the model's config alone: its parameters counted on a meta-device skeleton
(no weights are read), wrapped by the configured method to count what trains, and the activation estimate and
micro-batch plan of train/memory.py - the very functions `train` calls, given the memory that will be free once the
weights are in."""

from __future__ import annotations

import logging

import torch

from tunesmith.doctor.report import MemoryEstimate, MemoryLine

OPTIMIZER_BYTES = {"adamw": 8, "paged_adamw": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0}  # per trained value
QUANTIZED_BYTES = {4: 0.53, 8: 1.02}  # bitsandbytes nf4 with double quantization / int8, scales included


def _skeleton(source: str, head: str, dtype: torch.dtype):
    from tunesmith.model.loader import model_class, model_config

    with torch.device("meta"):  # shapes only: no memory, no weights read
        return model_class(head).from_config(model_config(source, head), dtype=dtype)


def _counted(model, method, stage, dtype, cfg) -> tuple[object, int, int]:
    """(wrapped meta model, trained values, linear weights a quantizing method stores in few bits)."""
    from tunesmith.model.methods import get_method
    from tunesmith.model.methods.base import count_parameters

    quantizes = method.quantization(dtype) is not None if method.name == "qlora" else False
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and n.split(".")[-1] not in ("lm_head", "score")) if quantizes else 0
    wrapper = get_method("lora", cfg) if quantizes else method  # its LoRA, on the unquantized skeleton
    with torch.device("meta"):
        wrapped = wrapper.wrap(model, checkpointing=False, heads=stage.heads)
    trained, _ = count_parameters(wrapped)
    return wrapped, trained, linear


def estimate(cfg, source: str, stage, method, device: torch.device, dtype: torch.dtype,
             trained_dtype: torch.dtype | None = None) -> MemoryEstimate:
    """`dtype`: what the base is stored in; `trained_dtype`: what trained weights and gradients are kept in
    (fp32 under mixed precision; default `dtype`)."""
    from tunesmith.train.memory import activation_bytes_per_token, free_memory, plan_memory

    base = _skeleton(source, stage.head, dtype)
    base_values = sum(p.numel() for p in base.parameters())
    width = torch.finfo(dtype).bits // 8
    trained_width = torch.finfo(trained_dtype or dtype).bits // 8
    _, trained, quantized = _counted(base, method, stage, dtype, cfg)
    bits = getattr(method, "bits", None)
    weights = int((base_values - quantized) * width + quantized * QUANTIZED_BYTES.get(bits, width))
    adapter = method.saves_adapter
    lines = [MemoryLine(f"weights ({base_values / 1e6:,.0f}M values, {_describe(dtype, bits if quantized else None)})",
                        weights)]
    if adapter:
        lines.append(MemoryLine(f"adapter ({trained / 1e6:,.2f}M values)", trained * trained_width))
    lines.append(MemoryLine("gradients", trained * trained_width))
    lines.append(MemoryLine(f"optimizer state ({cfg.optimizer})", trained * OPTIMIZER_BYTES.get(cfg.optimizer, 8)))
    fixed = sum(line.bytes for line in lines)
    free = free_memory(device)
    quiet = logging.getLogger("tunesmith")
    level, quiet.level = quiet.level, logging.WARNING  # plan_memory logs its choice; the report shows it
    try:
        # train plans once the weights are loaded: the memory free then is what is free now minus the weights.
        plan = plan_memory(cfg, base, device, free=max(free - weights - (trained * trained_width if adapter else 0), 0),
                           trains_all_weights=not adapter)
    finally:
        quiet.level = level
    plain = activation_bytes_per_token(base.config, dtype, False)
    checkpointed = activation_bytes_per_token(base.config, dtype, True)
    total = fixed + plan.token_budget * plan.bytes_per_token
    smallest = fixed + cfg.cutoff_len * checkpointed  # one cutoff_len row, recomputing activations
    return MemoryEstimate(device.type, free, lines, plain, checkpointed, plan.token_budget, plan.checkpointing,
                          fits=smallest <= free, total_bytes=total)


def _describe(dtype: torch.dtype, bits: int | None) -> str:
    name = str(dtype).replace("torch.", "")
    return f"linear layers {bits}-bit, the rest {name}" if bits else name
