"""One bound on torch's CPU kernel caches, for every process that trains or decodes; and torch.compile's on-disk cache
kept apart per CPU kind.

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

import hashlib
import os
import platform
from pathlib import Path

from tunesmith.cpu import cpu_flags

TRAINING_ENTRIES = 64
DECODING_ENTRIES = 256


def bound_kernel_caches(entries: int) -> None:
    """Cap both caches at `entries` unless the user set them. They are read once, when the process creates its first
    kernel: call before any matmul (later calls change nothing)."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(entries))


def compile_cache_per_cpu() -> Path | None:
    """Give torch.compile's on-disk cache a folder of its own for this CPU kind, unless the user chose one
    (TORCHINDUCTOR_CACHE_DIR); returns the folder it set. Call before the first compile.

    Inductor writes CPU kernels for the vector width of the CPU it compiles on, and its cache (by default
    /tmp/torchinductor_USER) does not tell CPU kinds apart: a virtual machine image, a container or a shared home
    folder that carries the cache to another CPU gets another CPU's kernels. Measured with torch 2.13 on an AMD EPYC
    (avx512), LoRA on a model whose attention breaks the compiled graph: kernels cached under
    ATEN_CPU_CAPABILITY=avx2 (8 floats per vector) and run with AVX-512 (16) corrupted the heap, `free(): invalid
    pointer`; kernels cached with AVX-512 and run held to AVX2 gave a NaN loss at the first step."""
    default = _default_compile_cache()
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and os.path.abspath(chosen) != str(default):  # inductor writes its default there once it is imported
        return None
    folder = default / f"cpu-{cpu_kind()}"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def _default_compile_cache() -> Path:
    """Where inductor caches when not told: its own rule (an internal module; tests/test_kernel_caches.py fails loudly
    if it moves)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return Path(os.path.abspath(default_cache_dir()))


def cpu_kind() -> str:
    """A short name for what compiled CPU code depends on: the instruction-set flags and the instruction set torch is
    held to (ATEN_CPU_CAPABILITY)."""
    flags = " ".join(sorted(cpu_flags())) or platform.processor()  # not Linux: the processor's name is what there is
    described = f"{platform.machine()}|{flags}|{os.environ.get('ATEN_CPU_CAPABILITY', '')}"
    return hashlib.sha256(described.encode()).hexdigest()[:12]
