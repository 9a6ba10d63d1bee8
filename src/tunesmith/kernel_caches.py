"""One bound on torch's CPU kernel caches, for every process that trains or decodes.

oneDNN (torch's bf16 CPU matmuls) keeps a compiled kernel per matrix shape and ideep a plan per shape, up to 1,024 of
each by default, and never frees them. Shapes here vary all the time: packing gives nearly every training micro-batch
a new token count, and every prompt length is a new prefill shape. Measured on a 2-core AMD EPYC (avx512_bf16):

- training (the benchmark's LoRA run): 50 MB more held after every step, peak 2.39 GiB after 8 steps and growing;
  one micro-batch uses ~30 shapes, reused by every layer, so 64 entries keep all of its hits: a flat 1.9 GiB, as
  fast (no cache at all: -40%; 128 entries: 2.1 GiB);
- decoding (the embedded model, 300 prompts of 300 lengths, 2 tokens each): 2.22 GiB and growing by default,
  1.58 GiB with 64 entries, and 11% faster; 8 concurrent streaming clients through `tunesmith serve`: the same
  tokens/s within the run-to-run noise (a decoding step of B rows uses 5 shapes, which stay in the LRU).
"""

from __future__ import annotations

import os

KERNEL_CACHE_ENTRIES = 64


def bound_kernel_caches() -> None:
    """Cap both caches at KERNEL_CACHE_ENTRIES unless the user set them. They are read once, when the process
    creates its first kernel: call before any matmul (later calls change nothing)."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(KERNEL_CACHE_ENTRIES))
