"""Read rows from json / jsonl / csv / parquet files or a hub dataset, remembering where each row came from.

Every row is returned as `(location, dict)` where location is `path:line` (files with lines) or `path:row N`, so a
bad row anywhere in the pipeline can be reported as exactly the place the user has to open.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from tunesmith.errors import DataError

Row = tuple[str, dict[str, Any]]
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


def read_rows(source: str) -> list[Row]:
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FILE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no {', '.join(FILE_SUFFIXES)} files in this folder")
        return [row for f in files for row in read_rows(str(f))]
    if path.exists():
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet,
                   ".txt": _read_text}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .json, .jsonl, .csv, .parquet or .txt")
        rows = list(reader(path))
        if not rows:
            raise DataError(f"{path}: the file has no rows")
        return rows
    if source.endswith(FILE_SUFFIXES) or "/" not in source.strip("/"):
        raise DataError(f"{source}: file not found; check the path (relative paths start at the current folder)")
    return _read_hub(source)


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: invalid JSON ({e.msg} at column {e.colno}); fix or delete the line")
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{number}: expected a JSON object {{...}}, got {type(obj).__name__}; "
                               "write one object per line, e.g. {{\"instruction\": ..., \"output\": ...}}")
            yield f"{path}:{number}", obj


def _read_json(path: Path) -> Iterator[Row]:
    """A JSON array of objects, or JSON lines saved as .json; each element's own line number is tracked."""
    text = path.read_text(encoding="utf-8")
    start = len(text) - len(text.lstrip())
    if not text[start:start + 1] == "[":
        yield from _read_jsonl(path)
        return
    decoder = json.JSONDecoder()
    pos, number = start + 1, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataError(f"{path}:{text.count(chr(10)) + 1}: the JSON array is not closed; add the final ]")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno}); fix the element")
        number += 1
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{line}: element {number} should be a JSON object {{...}}, got "
                            f"{type(obj).__name__}; make every element an object")
        yield f"{path}:{line}", obj


def _read_csv(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for obj in reader:
            if None in obj:
                raise DataError(f"{path}:{reader.line_num}: more fields than the header has; quote fields with commas")
            yield f"{path}:{reader.line_num}", obj


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for number, obj in enumerate(table.to_pylist(), 1):
        yield f"{path}:row {number}", obj


def _read_text(path: Path) -> Iterator[Row]:
    """Plain text for pretraining: documents are separated by blank lines."""
    text = path.read_text(encoding="utf-8")
    buf, first = [], 1
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            if not buf:
                first = number
            buf.append(raw)
        elif buf:
            yield f"{path}:{first}", {"text": "\n".join(buf)}
            buf = []
    if buf:
        yield f"{path}:{first}", {"text": "\n".join(buf)}


def _read_hub(name: str) -> list[Row]:
    """A dataset on the Hugging Face hub: `owner/name` or `owner/name:split` (works offline once cached)."""
    repo, _, split = name.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(repo, split=split or "train")
    except Exception as e:  # the hub client raises many types; the user needs the one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{name}: could not load the hub dataset ({first}); check the name, your network "
                        "or pass a local file") from None
    return [(f"{name}:row {i + 1}", dict(obj)) for i, obj in enumerate(ds)]
