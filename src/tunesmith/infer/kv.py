"""KV-cache surgery for continuous batching, kept in one place because it reads the cache's layer tensors.

Rows leave a running batch with the public `Cache.batch_select_indices`. Rows join by building a new cache with the
public `Cache.update`, from both caches' per-layer tensors left-padded to one length. Reading those tensors
(`cache.layers[i].keys/.values`) is the one reliance on transformers internals: `tests/infer/test_kv.py` fails
loudly if it changes, and `can_merge` keeps any cache with other layer kinds (sliding windows) out of this path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def can_merge(cache) -> bool:
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
                                for layer in layers)


def select_rows(cache, rows: list[int]) -> None:
    cache.batch_select_indices(torch.tensor(rows, device=cache.layers[0].keys.device))


def merge(a, b, width_a: int, width_b: int):
    """A new cache holding a's rows then b's rows, each left-padded (with zeros) to max(width_a, width_b)."""
    from transformers import DynamicCache

    width = max(width_a, width_b)
    merged = DynamicCache()
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        keys = torch.cat([F.pad(la.keys, (0, 0, width - width_a, 0)), F.pad(lb.keys, (0, 0, width - width_b, 0))])
        values = torch.cat([F.pad(la.values, (0, 0, width - width_a, 0)),
                            F.pad(lb.values, (0, 0, width - width_b, 0))])
        merged.update(keys, values, i)
    return merged


def drop_left(cache, columns: int):
    """A new cache without the first `columns` positions (padding no remaining row attends to)."""
    from transformers import DynamicCache

    trimmed = DynamicCache()
    for i, layer in enumerate(cache.layers):
        trimmed.update(layer.keys[:, :, columns:].contiguous(), layer.values[:, :, columns:].contiguous(), i)
    return trimmed
