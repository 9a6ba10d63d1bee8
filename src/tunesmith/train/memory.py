"""Auto micro-batch: how many tokens one packed micro-batch may hold, and whether activations must be recomputed,
decided from the memory that is free once the model is loaded. Rows per optimizer step never change, so the loss
and the update are the same whatever is chosen; only the grouping of rows into micro-batches (and the speed) is.

The activation estimate is per token and per decoder layer: HIDDEN_COPIES hidden-sized plus INTERMEDIATE_COPIES
intermediate-sized values kept for backward (attention in/out, norms, the MLP's gate/up/act outputs, LoRA inputs),
fitted to SmolLM2-135M in fp32 (2.4 GB for 750 tokens) and rounded up. With checkpointing only each layer's input is
kept, plus one layer's activations while it is recomputed.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from dataclasses import dataclass

import torch

from tunesmith.config import TrainConfig

log = logging.getLogger("tunesmith")
HIDDEN_COPIES, INTERMEDIATE_COPIES = 20, 10  # values per token and layer, in units of hidden / intermediate size
USABLE = 0.6  # share of the free memory given to activations; the rest absorbs fragmentation and the optimizer
# On a CPU a micro-batch of 768 tokens already runs at full speed: with bf16 autocast on the benchmark's LoRA step
# (AMD EPYC, avx512_bf16) 512/768/1,024 tokens gave 2.13/2.23/2.22 samples/s at 2.45/2.50/2.92 GiB peak (2.31 and
# 2.54 GiB for 768 and 1,024 with release_free_memory; all peaks before the kernel caches were capped, see
# tunesmith.kernel_caches); 2,048 tokens and more were no faster, only bigger.
CPU_TOKEN_CAP = 768


@dataclass
class MemoryPlan:
    token_budget: int
    checkpointing: bool
    free_bytes: int
    bytes_per_token: int


def release_free_memory(device: torch.device) -> None:
    """Give the heap's free pages back to the system, once, before training (glibc's malloc_trim). Loading the base
    in bf16 frees its fp32 copy; left in the heap, those holes fragmented it and the peak of the benchmark's CPU run
    grew from 2.3 to 2.5 GiB. Trimming every step as well kept it lower still, but cost 7% of the speed: freed
    pages come back zero-filled, one fault at a time."""
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # another C library (musl has no malloc_trim)
        pass


def free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: what the kernel can hand out without swapping
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"]
    except (OSError, KeyError, ValueError):
        return 4 * 2**30  # unknown platform: assume a modest laptop


def activation_bytes_per_token(config, dtype: torch.dtype, checkpointing: bool) -> int:
    config = getattr(config, "text_config", config)
    hidden = config.hidden_size
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    layers = config.num_hidden_layers
    width = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 2
    per_layer = hidden if checkpointing else HIDDEN_COPIES * hidden + INTERMEDIATE_COPIES * intermediate
    recompute = 0 if not checkpointing else HIDDEN_COPIES * hidden + INTERMEDIATE_COPIES * intermediate
    return width * (layers * per_layer + recompute)  # with checkpointing, one layer's activations are live again


def plan_memory(cfg: TrainConfig, model, device: torch.device, free: int | None = None,
                saved: dict | None = None, trains_all_weights: bool = False, processes: int = 1) -> MemoryPlan:
    """Explicit settings win; `max_tokens_per_batch: 0` and `gradient_checkpointing: auto` are decided here from
    `free` bytes (default: measured now, shared by `processes` on a CPU). `saved`: the plan of the checkpoint being
    resumed, reused as it is so the resumed steps group rows exactly as the interrupted run did (free memory differs
    from one start to the next)."""
    if saved and not cfg.max_tokens_per_batch and cfg.gradient_checkpointing == "auto":
        plan = MemoryPlan(**saved)
        log.info("micro-batches of up to %d tokens%s, as planned by the run being resumed", plan.token_budget,
                 "; activation checkpointing on" if plan.checkpointing else "")
        return plan
    # Gradients and AdamW's two moments appear at the first step: reserve them (fp32, 12 bytes per trained value).
    # Adapters train ~1% of the weights, which the USABLE margin covers.
    trained = sum(p.numel() for p in model.parameters()) if trains_all_weights else 0
    if free is None:  # processes on one CPU share its memory; each GPU process has its own device
        free = free_memory(device) // (processes if device.type == "cpu" else 1)
    free = max(free - 12 * trained, 0)
    dtype = next(model.parameters()).dtype
    most = cfg.rows_per_step * cfg.cutoff_len  # a whole optimizer step in one micro-batch: nothing to gain above
    checkpointing = cfg.gradient_checkpointing
    if checkpointing == "auto":
        fits = USABLE * free // activation_bytes_per_token(model.config, dtype, False)
        checkpointing = fits < (cfg.max_tokens_per_batch or cfg.cutoff_len)
    per_token = activation_bytes_per_token(model.config, dtype, bool(checkpointing))
    budget = cfg.max_tokens_per_batch
    if not budget:
        budget = int(min(max(USABLE * free // per_token, cfg.cutoff_len), most))
        if device.type == "cpu":  # measured: above ~2k tokens a CPU micro-batch is no faster, only bigger
            budget = min(budget, max(CPU_TOKEN_CAP, cfg.cutoff_len))
    plan = MemoryPlan(budget, bool(checkpointing), free, per_token)
    log.info("micro-batches of up to %d tokens (%.1f GiB free, ~%.1f MB of activations per token)%s", budget,
             free / 2**30, per_token / 1e6, "; activation checkpointing on" if plan.checkpointing else "")
    return plan
