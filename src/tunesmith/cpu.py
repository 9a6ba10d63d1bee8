"""The CPU's instruction-set flags as the kernel lists them: one reader for the hardware probes (model.loader's bf16
fallback) and the compile cache's CPU kind (kernel_caches)."""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> frozenset[str]:
    """'flags' on x86, 'Features' on ARM; none where there is no /proc/cpuinfo."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return frozenset()
    line = next((line for line in lines if line.startswith(("flags", "Features"))), ":")
    return frozenset(line.split(":", 1)[1].split())
