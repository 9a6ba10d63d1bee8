"""Shared by the bench scripts: put a dated table into BENCHMARKS.md, replacing the previous one of its kind, and
name the CPU each table was measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
# What decides CPU speed here: bf16 runs fast only with AVX512-BF16 or AMX; int8 kernels use VNNI.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_description() -> str:
    """'AMD EPYC ..., 2 cores (avx2 yes, ..., amx_bf16 no, ...)' from /proc/cpuinfo, for every table's header."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS) if flags else "flags unknown"
    return f"{model}, {os.cpu_count()} cores ({shown})"


def write_section(heading: str, table: str) -> None:
    """`heading` is the section title without its date, e.g. '## Serving concurrency on CPU'."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\nTables are written by bench/.\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    BENCHMARKS.write_text(text.rstrip() + "\n\n" + table.rstrip() + "\n")
