"""Row-confined attention for packed micro-batches, registered through transformers' AttentionInterface.

A packed micro-batch is one sequence holding several rows. transformers handles that by building a block-diagonal
mask from the position ids, which on a CPU costs a full T x T mask per micro-batch and an attention over all of
it. Here each row attends only to itself, using the row boundaries (`cu_seq_lens_q`, the same keyword
flash-attention's varlen path reads), so the work is the sum of the rows' own attention.

Every argument a model passes is honoured, never dropped: `sliding_window` (Mistral, Qwen2, Phi-3, Gemma 2/3
local layers: a key is visible when `query - key < window`, transformers' `sliding_window_overlay`), `softcap`
(Gemma 2: `tanh(scores / cap) * cap` before the mask), `s_aux` (gpt-oss attention sinks: one extra logit per
head, dropped after the softmax), `scaling` and `dropout`. Plain causal rows take SDPA's causal kernel; a window
shorter than the row takes SDPA with a banded mask; softcap and sinks take the eager formula on the row alone. On a
CPU with fast bf16, rows of up to MATMUL_ROWS tokens under bf16 mixed precision take three batched bf16 matmuls
instead (causal and windowed alike), about twice as fast there as torch's CPU flash kernel.
Any other argument (or unequal query/key boundaries) makes the call fall back to the exact path: the model's own
eager attention over the packed sequence with a block-diagonal mask, which is what transformers itself runs.
On CUDA in bf16/fp16, plain and windowed causal rows all go through torch's own flash-attention varlen kernel in one
call (`torch.nn.attention.varlen`, no flash-attn package needed), once a check on a few random rows shows it gives
what the row loop gives on that GPU and torch; without it a CUDA model keeps transformers' attention.

The function is registered under its own name with the public `AttentionInterface` / `AttentionMaskInterface`
(no library internals are patched); `tests/model/test_attention.py` fails loudly if that contract changes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import sys

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)
NAME = "tunesmith_varlen"
# Keywords that describe the packing, the cache or other layers - nothing this attention has to apply.
PACKING = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids", "use_cache",
           "cache_position", "output_router_logits"}
HONOURED = {"sliding_window", "softcap", "s_aux"}


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None and attention_mask is None and query.shape[2] == key.shape[2]:
        bounds = torch.tensor([0, query.shape[2]], device=query.device)  # unpacked rows (one per line), no cache
    if bounds is None or attention_mask is not None:  # generation or padded input: the standard paths
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
            eager = _own_eager(module) or sdpa_attention_forward  # SDPA refuses what it cannot apply
            return eager(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    unknown = {k for k, v in kwargs.items() if k not in PACKING | HONOURED and v is not None and v is not False}
    same_bounds = kwargs.get("cu_seq_lens_k") is None or torch.equal(kwargs["cu_seq_lens_k"], bounds)
    if unknown or not same_bounds or query.shape[2] != key.shape[2]:
        return packed_exact_attention(module, query, key, value, bounds, dropout, scaling, **kwargs)
    window, softcap, sinks = kwargs.get("sliding_window"), kwargs.get("softcap"), kwargs.get("s_aux")
    dtype = query.dtype
    if (query.is_cuda and query.shape[0] == 1 and dtype in (torch.bfloat16, torch.float16) and softcap is None
            and sinks is None and not (dropout and getattr(module, "training", False))
            and cuda_flash_works(query.device)):
        return flash_rows(query, key, value, bounds, kwargs.get("max_length_q"), scaling, window), None
    edges = bounds.tolist()
    cpu_low = query.device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)
    with torch.autocast("cpu", enabled=False) if cpu_low else contextlib.nullcontext():  # each row picks its own
        out = _each_row(module, query, key, value, edges, dropout, scaling, window, softcap, sinks, cpu_low)
    return out.contiguous().to(dtype), None


# Rows up to this many tokens, in bf16 on a CPU with fast bf16, are attended by three batched matmuls (scores with
# the causal bias added, softmax, values) instead of torch's flash kernel: forward and backward of one SmolLM2 row
# (9 heads, 3 key heads) took 0.27/0.47/1.35/2.4/3.4/5.9 ms for 64/128/176/256/384/512 tokens against fp32 flash's
# 0.30/1.01/1.85/3.7/7.9/13.9 (AMD EPYC avx512_bf16 avx_vnni, 2 cores), and is as close to fp32 as bf16 flash. The saved
# probabilities (heads x length^2 in bf16, 4.7 MB for a 512-token row of 9 heads, per layer) bound the length.
MATMUL_ROWS = 512


def matmul_rows(dtype: torch.dtype) -> bool:
    """Are short rows in `dtype` attended by batched matmuls on this CPU? bf16 where bf16 matmuls are fast."""
    from tunesmith.model.loader import cpu_has_fast_bf16

    return dtype == torch.bfloat16 and cpu_has_fast_bf16()


def plan_cpu_attention(dtype: torch.dtype, longest_row: int) -> None:
    """Decide, and log, how a run's packed rows in `dtype` are attended on this CPU: now, before the first step, not
    in the middle of it."""
    if dtype == torch.float32:
        return
    if matmul_rows(dtype):
        log.info("packed rows of up to %d tokens attended in bf16 by batched matmuls (this CPU has fast bf16)",
                 MATMUL_ROWS)
        if longest_row <= MATMUL_ROWS:
            return
    cpu_attention_dtype(dtype)  # timed and logged


def cpu_attention_dtype(dtype: torch.dtype) -> torch.dtype:
    """What rows that flash attention takes (longer than MATMUL_ROWS, or all rows where matmul_rows says no) are
    attended in on this CPU when the model computes in `dtype`: `dtype` itself, or fp32. fp32 unless the CPU's
    bf16 kernel is clearly faster, which is decided once per process by timing one long row's forward and backward
    both ways (~0.3 s). With AVX512-BF16 but no AMX, torch's bf16 flash-attention backward measured 1.3-2.4x slower
    than fp32 (rows of 100-340 tokens, AMD EPYC, 2 cores); where the CPU has AMX, the kernel computes bf16 on AMX
    tiles instead. fp32 is also the more exact, so a near tie keeps it."""
    if dtype == torch.float32:
        return dtype
    return _measured_cpu_attention_dtype(dtype)


LOW_PRECISION_MARGIN = 1.5  # bf16 must be this much faster: a margin that timing noise cannot flip between runs


@functools.cache
def _measured_cpu_attention_dtype(dtype: torch.dtype) -> torch.dtype:
    from tunesmith.model.loader import cpu_has_fast_bf16

    if dtype != torch.bfloat16 or not cpu_has_fast_bf16():  # emulated in software there: no need to time it
        return torch.float32
    try:
        fp32, low = _row_seconds(torch.float32), _row_seconds(dtype)
    except RuntimeError as e:  # a kernel this torch lacks: fp32, which always works
        log.info("packed rows attended in fp32 on this CPU (bf16 kernel not usable: %s)", e)
        return torch.float32
    choice = dtype if fp32 > LOW_PRECISION_MARGIN * low else torch.float32
    log.info("packed rows attended in %s on this CPU (one row forward and backward: bf16 %.2f ms, fp32 %.2f ms)",
             "bf16" if choice == dtype else "fp32", low * 1e3, fp32 * 1e3)
    return choice


def _row_seconds(dtype: torch.dtype, length: int = 2 * MATMUL_ROWS, repeats: int = 2) -> float:
    """Best of `repeats` timings of one causal GQA row's attention, forward and backward, in `dtype`."""
    from tunesmith.model.loader import fastest_seconds

    # First used inside a model's forward, which may run without gradients, in inference mode or under autocast.
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False):
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, heads, length, 64, generator=g).to(dtype).requires_grad_() for heads in (8, 2, 2))
        grad = torch.randn(1, 8, length, 64, generator=g).to(dtype)
        return fastest_seconds(
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).backward(grad), repeats)


def _each_row(module, query, key, value, edges: list[int], dropout, scaling, window, softcap, sinks,
              cpu_low: bool = False) -> torch.Tensor:
    """The row loop: each row of (1, H, T, D) attends to itself alone; (1, T, H, D) out. `edges` run from 0 to T.
    Rows are cut with `split`, whose backward is one concatenation; slicing instead makes autograd zero-fill a
    whole-sequence gradient for every row of q, k and v and add them up. `cpu_low`: bf16/fp16 rows on a CPU (autocast
    off), where each row picks its kernel and precision by its length (matmul_rows, cpu_attention_dtype)."""
    sizes = [e - s for s, e in itertools.pairwise(edges)]
    row = _cpu_low_row if cpu_low else _row_attention
    rows = [row(module, q, k, v, dropout, scaling, window, softcap, sinks)
            for q, k, v in zip(query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2))]
    return torch.cat(rows, dim=2).transpose(1, 2)


def _cpu_low_row(module, q, k, v, dropout, scaling, window, softcap, sinks) -> torch.Tensor:
    length, training = q.shape[2], getattr(module, "training", False)
    if (length <= MATMUL_ROWS and softcap is None and sinks is None and not (dropout and training)
            and matmul_rows(q.dtype)):
        return _matmul_attention(q, k, v, scaling, window if window is not None and window < length else None)
    if cpu_attention_dtype(q.dtype) == torch.float32:
        q, k, v = q.float(), k.float(), v.float()
    return _row_attention(module, q, k, v, dropout, scaling, window, softcap, sinks)


def _matmul_attention(q, k, v, scaling, window: int | None) -> torch.Tensor:
    """One row (B, H, L, D), causal (and windowed), as softmax(q k^T * scale + bias) v in q's dtype: three batched
    matmuls. Grouped-query heads share their key/value head without copying it: the group's queries are stacked
    into one (group x L, D) matrix against the shared (L, D) keys, and the bias is tiled to match."""
    batch, heads, length, dim = q.shape
    kv = batch * k.shape[1]
    groups = heads // k.shape[1]
    scores = torch.baddbmm(_tiled_bias(length, groups, window, q.dtype, q.device),
                           q.reshape(kv, groups * length, dim), k.reshape(kv, length, dim).transpose(1, 2),
                           alpha=scaling if scaling is not None else dim ** -0.5)
    probs = torch.softmax(scores, dim=-1)
    return torch.bmm(probs, v.reshape(kv, length, dim)).view(batch, heads, length, dim)


@functools.lru_cache(maxsize=16)  # every layer meets the same row lengths; each <= groups x 0.5 MB
def _tiled_bias(length: int, groups: int, window: int | None, dtype: torch.dtype, device) -> torch.Tensor:
    """(groups x L, L): 0 where the key is visible (causal, within the window), -inf elsewhere, once per group."""
    unseen = ~_visible(length, window, device)
    return torch.zeros(length, length, dtype=dtype, device=device).masked_fill_(unseen, float("-inf")).repeat(groups, 1)


def flash_rows(query, key, value, bounds, max_length: int | None, scaling, window: int | None) -> torch.Tensor:
    """Every row in one call of torch's flash-attention varlen kernel (torch.nn.attention.varlen, CUDA): (1, H, T, D)
    in, (1, T, H, D) out, as the row loop returns. Its signature changed between torch releases (is_causal ->
    window_size, scale, enable_gqa), so the arguments follow the one installed; what it cannot express raises
    NotImplementedError."""
    from torch.nn.attention.varlen import varlen_attn

    params = _parameters(varlen_attn)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, heads, D)
    kwargs = {}
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:
            k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
    if "window_size" in params:  # flash's (left, right): key j is seen from query i when i - left <= j <= i
        kwargs["window_size"] = (window - 1 if window is not None else -1, 0)
    elif window is None and "is_causal" in params:
        kwargs["is_causal"] = True
    else:
        raise NotImplementedError("this torch's varlen_attn has no sliding window")
    if scaling is not None and "scale" in params:
        kwargs["scale"] = scaling
    elif scaling is not None and abs(scaling - q.shape[-1] ** -0.5) > 1e-9:
        raise NotImplementedError("this torch's varlen_attn has no scale")
    cu = bounds.to(device=q.device, dtype=torch.int32)
    longest = max_length or int((cu[1:] - cu[:-1]).max())
    return varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, longest, longest, **kwargs)[None]


@functools.cache
def _parameters(kernel) -> frozenset[str]:
    """The keyword names a kernel takes, read once per kernel (flash_rows runs in every layer)."""
    return frozenset(inspect.signature(kernel).parameters)


@functools.cache
def cuda_flash_works(device: torch.device) -> bool:
    """Does flash_rows give what the row loop gives, outputs and gradients, causal and windowed, on this GPU and
    torch? Checked once on a few random rows; if not (no kernel, an older signature, an unsupported GPU), packed
    rows keep the row loop."""
    try:
        g = torch.Generator(device=device).manual_seed(0)
        inputs = [torch.randn(1, heads, 24, 64, device=device, generator=g, dtype=torch.bfloat16)
                  for heads in (4, 2, 2)]
        weights = torch.randn(1, 24, 4, 64, device=device, generator=g)  # d loss / d output
        bounds = torch.tensor([0, 5, 16, 24], device=device)
        for window in (None, 4):
            results = []
            for rows_at_once in (True, False):
                q, k, v = (t.clone().requires_grad_() for t in inputs)
                out = flash_rows(q, k, v, bounds, None, 0.125, window) if rows_at_once else \
                    _each_row(None, q, k, v, bounds.tolist(), 0.0, 0.125, window, None, None)
                (out.float() * weights).sum().backward()
                results.append([out, q.grad, k.grad, v.grad])
            if not all(torch.allclose(a.float(), b.float(), atol=3e-2, rtol=3e-2) for a, b in zip(*results)):
                log.info("flash varlen attention gave other numbers than per-row SDPA; packed rows use the row loop")
                return False
    except Exception as e:  # noqa: BLE001 - whatever fails here (no kernel, old signature, GPU): do not use it
        log.info("flash varlen attention unavailable (%s: %s); packed rows use the row loop", type(e).__name__, e)
        return False
    return True


def _visible(length: int, window: int | None, device) -> torch.Tensor:
    """(L, L) bool: causal, and within the sliding window when there is one."""
    q = torch.arange(length, device=device)[:, None]
    k = torch.arange(length, device=device)[None, :]
    visible = k <= q
    return visible & (k > q - window) if window is not None else visible


def _row_attention(module, q, k, v, dropout, scaling, window, softcap, sinks) -> torch.Tensor:
    length = q.shape[2]
    window = window if window is not None and window < length else None  # a window covering the row is causal
    training = getattr(module, "training", False)
    if softcap is None and sinks is None:
        gqa = q.shape[1] != k.shape[1]
        mask = None if window is None else _visible(length, window, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout if training else 0.0,
                                              scale=scaling, is_causal=mask is None, enable_gqa=gqa)
    # The eager formula (transformers' Gemma 2 / gpt-oss eager_attention_forward) on this row alone.
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(2, 3)) * (scaling if scaling is not None else q.shape[-1] ** -0.5)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~_visible(length, window, q.device), torch.finfo(scores.dtype).min)
    if sinks is None:
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    else:
        sink = sinks.reshape(1, -1, 1, 1).expand(q.shape[0], -1, length, 1).to(scores.dtype)
        combined = torch.cat([scores, sink], dim=-1)
        combined = combined - combined.max(dim=-1, keepdim=True).values
        probs = F.softmax(combined, dim=-1, dtype=combined.dtype)[..., :-1]
    probs = F.dropout(probs, p=dropout, training=training).to(v.dtype)
    return torch.matmul(probs, v)


def packed_exact_attention(module, query, key, value, bounds, dropout, scaling, **kwargs):
    """The model's own eager attention over the whole packed sequence with a block-diagonal (and windowed) additive
    mask: slower, but exactly what transformers computes for a packed batch, whatever the arguments mean."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    rows = torch.repeat_interleave(torch.arange(len(bounds) - 1, device=query.device),
                                   (bounds[1:] - bounds[:-1]).long().to(query.device))
    local = torch.arange(length, device=query.device) - bounds[:-1].long().to(query.device)[rows]
    visible = (rows[:, None] == rows[None, :]) & (local[None, :] <= local[:, None])
    window = kwargs.get("sliding_window")
    if window is not None:
        visible &= local[None, :] > local[:, None] - window
    additive = torch.zeros(visible.shape, dtype=query.dtype, device=query.device)
    additive = additive.masked_fill(~visible, torch.finfo(query.dtype).min)[None, None]
    eager = _own_eager(module)
    if eager is None:  # a model without its own eager function: SDPA, which refuses what it cannot apply
        return sdpa_attention_forward(module, query, key, value, visible[None, None], dropout=dropout,
                                      scaling=scaling, **kwargs)
    return eager(module, query, key, value, additive, dropout=dropout, scaling=scaling, **kwargs)


def _own_eager(module):
    """The eager attention function of the module's own modeling file (every decoder family defines one)."""
    return getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)


def _no_mask(*args, **kwargs):
    return None  # causality, windows and row boundaries are applied inside varlen_attention


def use_varlen_attention(model) -> None:
    """Switch a loaded model to row-confined attention (call before wrapping it in an adapter)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    model.set_attn_implementation(NAME)


def wants_varlen(device: torch.device, model) -> bool:
    """Row-confined attention for a model on transformers' sdpa/eager attention: always on a CPU (and MPS); on CUDA
    when torch's flash varlen kernel works there (transformers' sdpa would attend over the whole packed sequence
    under a block-diagonal mask). A model set up for flash-attention 2 keeps it."""
    if model.config._attn_implementation not in ("sdpa", "eager", None):
        return False
    return device.type != "cuda" or cuda_flash_works(device)
