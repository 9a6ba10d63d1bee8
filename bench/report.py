"""Shared by the bench scripts: put a dated table into BENCHMARKS.md, replacing the previous one of its kind."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(heading: str, table: str) -> None:
    """`heading` is the section title without its date, e.g. '## Serving concurrency on CPU'."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\nTables are written by bench/.\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    BENCHMARKS.write_text(text.rstrip() + "\n\n" + table.rstrip() + "\n")
