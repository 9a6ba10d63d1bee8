"""One bound on torch's CPU kernel caches, for every process that trains or decodes.

oneDNN (torch's bf16 CPU matmuls) keeps a compiled kernel per matrix shape and ideep a plan per shape, up to 1,024 of
each by default, and never frees them. Shapes here vary all the time: packing gives nearly every training micro-batch
a new token count, and every prompt length is a new prefill shape. Measured on a 2-core AMD EPYC (avx512_bf16):

- training (the benchmark's LoRA run): 50 MB more held after every step, peak 2.39 GiB after 8 steps and growing;
  one micro-batch uses ~30 shapes, reused by every layer, so 64 entries keep all of its hits: a flat 1.9 GiB, as
  fast (no cache at all: -40%; 128 entries: 2.1 GiB);
- decoding (the embedded model, 300 prompts of 300 lengths, 2 tokens each): 2.22 GiB and growing by default,
  1.89 GiB with 256 entries (1.58 GiB with 64), as fast. Decoding gets the larger bound because its working set is
  larger: a step of B rows uses 5 shapes (q/k/v, o, gate/up, down, head), so a server batching up to 16 rows cycles
  through ~80 of them as requests join and leave, plus each prompt's own; 64 entries could evict them between steps.
"""

from __future__ import annotations

import os

TRAINING_ENTRIES = 64
DECODING_ENTRIES = 256


def bound_kernel_caches(entries: int) -> None:
    """Cap both caches at `entries` unless the user set them. They are read once, when the process creates its first
    kernel: call before any matmul (later calls change nothing)."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(entries))
