"""KV-cache surgery for continuous batching, kept in one place because it reads the cache's layer tensors.

Rows leave a running batch with the public `Cache.batch_select_indices`. Rows join by building a new cache with the
public `Cache.update`, from both caches' per-layer tensors left-padded to one length. Reading those tensors
(`cache.layers[i].keys/.values`) is the one reliance on transformers internals: `tests/infer/test_kv.py` fails
loudly if it changes, and `can_merge` keeps any cache with other layer kinds (sliding windows) out of this path.
Linear-attention layers (Qwen3.5, Qwen3-Next) keep a conv and a recurrent state per row instead of keys, which
transformers cannot select rows of: `select_rows` indexes those states itself (their names are read here alone).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F


def can_merge(cache) -> bool:
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
                                for layer in layers)


def cache_keyword(model) -> str:
    """The keyword a model's forward takes its cache under: `cache` since transformers 5.2x renamed it, warning about
    the old `past_key_values` until 5.40 removes it; `past_key_values` in the releases before (5.17 and on)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def returned_cache(output):
    """The cache a forward returns, under either name (see cache_keyword)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def new_cache(model):
    """An empty cache for `model`: a plain DynamicCache, whose attention layers merge, unless the model has layers of
    other kinds (linear attention), which need their own cache layers, built from its config."""
    from transformers import DynamicCache

    config = model.config.get_text_config(decoder=True)
    kinds = set(getattr(config, "layer_types", None) or ())
    return DynamicCache(config=model.config) if kinds - {"full_attention", "sliding_attention"} else DynamicCache()


def select_rows(cache, rows: list[int], device) -> None:
    index = torch.tensor(rows, device=device)
    for layer in cache.layers:
        for states in (getattr(layer, "conv_states", None), getattr(layer, "recurrent_states", None)):
            for key, state in (states or {}).items():  # linear attention: one state per row
                if state is not None:
                    states[key] = state[index]
        if hasattr(layer, "batch_select_indices"):  # attention keys and values
            layer.batch_select_indices(index)


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


class SlotCache:
    """A preallocated KV cache for the fast decoding path (infer/llama_backend.py): one row per request, each row
    filled from position 0 to its own length, so requests of any prompt length sit side by side without padding.

    Keys and values live in one tensor each, (layers, rows, kv_heads, capacity, head_dim), written in place every
    step. Capacity grows by doubling (a copy now and then instead of a concatenation per layer per token, as a
    `DynamicCache` does); a leaving row is filled by the last row, so rows 0..n-1 stay a plain slice.
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device, limit: int,
                 rows: int = 1, capacity: int = 256):
        self.shape = (layers, kv_heads, head_dim)
        self.limit = limit  # the model's context length: the cache never needs more
        capacity = min(capacity, limit)
        self.keys = torch.zeros(layers, rows, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.lengths: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def reserve(self, rows: int, length: int) -> None:
        """Make room for `rows` rows of up to `length` positions."""
        have_rows, have_len = self.keys.shape[1], self.keys.shape[3]
        if rows <= have_rows and length <= have_len:
            return
        new_rows = max(rows, have_rows * 2 if rows > have_rows else have_rows)
        new_len = min(self.limit, max(length, have_len * 2 if length > have_len else have_len))
        layers, kv_heads, head_dim = self.shape
        grown = []
        for old in (self.keys, self.values):
            new = old.new_zeros(layers, new_rows, kv_heads, new_len, head_dim)
            new[:, :have_rows, :, :have_len] = old
            grown.append(new)
        self.keys, self.values = grown

    def add_row(self, length: int) -> int:
        self.reserve(self.rows + 1, length)
        self.lengths.append(0)
        return self.rows - 1

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in this order), packed to the front."""
        if rows == list(range(len(rows))):
            self.lengths = self.lengths[:len(rows)]
            return
        index = torch.tensor(rows, device=self.keys.device)
        longest = max((self.lengths[r] for r in rows), default=0)
        self.keys[:, :len(rows), :, :longest] = self.keys[:, index, :, :longest]
        self.values[:, :len(rows), :, :longest] = self.values[:, index, :, :longest]
        self.lengths = [self.lengths[r] for r in rows]

    def append(self, other: SlotCache) -> None:
        """Take `other`'s rows after this cache's own."""
        start, longest = self.rows, max(other.lengths, default=0)
        self.reserve(start + other.rows, max([longest, *self.lengths]))
        self.keys[:, start:start + other.rows, :, :longest] = other.keys[:, :other.rows, :, :longest]
        self.values[:, start:start + other.rows, :, :longest] = other.values[:, :other.rows, :, :longest]
        self.lengths += other.lengths
