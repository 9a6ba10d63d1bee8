"""Row-confined attention for packed micro-batches, registered through transformers' AttentionInterface.

A packed micro-batch is one sequence holding several rows. transformers handles that by building a block-diagonal
mask from the position ids, which on a CPU costs a full T x T mask per micro-batch and an attention over all of
it. Here each row attends only to itself with plain causal SDPA, using the row boundaries (`cu_seq_lens_q`, the
same keyword flash-attention's varlen path reads), so the work is the sum of the rows' own attention.

The function is registered under its own name with the public `AttentionInterface` / `AttentionMaskInterface`
(no library internals are patched); `tests/model/test_attention.py` fails loudly if that contract changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "tunesmith_varlen"


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or attention_mask is not None:  # generation or padded input: the standard path
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    gqa = query.shape[1] != key.shape[1]
    edges = bounds.tolist()
    rows = [
        F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout,
                                       scale=scaling, is_causal=True, enable_gqa=gqa)
        for s, e in zip(edges[:-1], edges[1:])
    ]
    return torch.cat(rows, dim=2).transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    return None  # causality and row boundaries are applied inside varlen_attention


def use_varlen_attention(model) -> None:
    """Switch a loaded model to row-confined attention (call before wrapping it in an adapter)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    model.set_attn_implementation(NAME)


def wants_varlen(device: torch.device, model) -> bool:
    """CPU (and MPS) have no varlen kernel: use ours. CUDA keeps flash-attention varlen or SDPA's packed mask."""
    return device.type != "cuda" and model.config._attn_implementation in ("sdpa", "eager", None)
