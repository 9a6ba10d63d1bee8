"""Turn the bytes of one data file into rows `(location, dict)`; `sources.read_rows` finds the files.

Anything wrong with a file's bytes (not UTF-8, binary, truncated, nested too deeply, a cell too big) is a DataError
naming the file and the line, so the CLI prints one line instead of a traceback from json, csv or pyarrow.
Files are read whole: every row is kept in memory for training anyway, and whole text gives exact line numbers.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import logging
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.data.text_encoding import EXCEL_CSV, decode_text
from tunesmith.errors import DataError, first_line
from tunesmith.once import log_once

log = logging.getLogger(__name__)
Row = tuple[str, dict[str, Any]]

# Python's default csv cell limit is 128 KiB; a real dataset may hold whole documents in one cell. 2**31 - 1 is the
# largest value every platform's C long accepts, and a cell can never be bigger than the file we already hold.
CSV_FIELD_LIMIT = 2**31 - 1
# Spreadsheet files by name: what to do instead.
SPREADSHEETS = {".xlsx": "an Excel workbook", ".xls": "an old Excel workbook", ".ods": "a LibreOffice spreadsheet",
                ".numbers": "a Numbers spreadsheet"}
# Compressed text files, recognised by their first bytes whatever their name (public datasets ship .jsonl.gz; a
# download may keep its compression under a plain name). The format is the name's suffix under the compression one.
COMPRESSIONS = {".gz": (b"\x1f\x8b", gzip.decompress, "gzip"),
                ".bz2": (tuple(b"BZh%d" % level for level in range(1, 10)), bz2.decompress, "bz2"),
                ".xz": (b"\xfd7zXZ\x00", lzma.decompress, "xz")}
# Columns that make a JSON object a row itself rather than a wrapper around the rows ({"data": [...]}).
ROW_KEYS = {"instruction", "prompt", "question", "query", "input", "context", "output", "response", "completion",
            "answer", "system", "system_prompt", "history", "conversations", "conversation", "messages", "chosen",
            "rejected", "chosen_messages", "rejected_messages", "text", "content"}
_DECODER = json.JSONDecoder()


def data_suffix(path: Path) -> str:
    """The suffix that names a file's format: '.jsonl' for train.jsonl and for train.jsonl.gz."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in COMPRESSIONS else suffix


def is_data_file_name(name: str) -> bool:
    return data_suffix(Path(name)) in FILE_SUFFIXES


def read_file(path: Path) -> list[Row]:
    suffix = data_suffix(path)
    if suffix == ".parquet" and path.suffix.lower() in COMPRESSIONS:
        raise DataError(f"{path}: a compressed parquet file; decompress it first (parquet compresses itself)")
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in SPREADSHEETS:
        raise DataError(f"{path}: {SPREADSHEETS[suffix]}, not a data file tunesmith reads; {EXCEL_CSV} (or "
                        "File > Export as CSV, UTF-8) and give the .csv")
    if suffix not in TEXT_READERS:
        shown = path.suffix if suffix == path.suffix.lower() else suffix + path.suffix
        raise DataError(f"{path}: unsupported file type '{shown}'; use {', '.join(FILE_SUFFIXES[:-1])} or "
                        f"{FILE_SUFFIXES[-1]} (also compressed: {', '.join(COMPRESSIONS)})")
    return TEXT_READERS[suffix](path, decode_text(path, _decompressed(path, _read_bytes(path))))


def _decompressed(path: Path, data: bytes) -> bytes:
    for magic, decompress, name in COMPRESSIONS.values():
        if data.startswith(magic):
            try:
                return decompress(data)
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:  # gzip, bz2 and xz each raise their own
                raise DataError(f"{path}: corrupt or truncated {name} file ({first_line(e, 120)}); download or "
                                "compress it again") from None
    return data


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _unreadable(path, e) from None


def _unreadable(path: Path, e: OSError) -> DataError:
    if isinstance(e, PermissionError):
        return DataError(f"{path}: permission denied; make the file readable (chmod a+r) or copy it somewhere "
                         "you can read")
    return DataError(f"{path}: cannot read the file ({e.strerror or e}); check the path")


class _Lines:
    """Line number of a position in text; asking for increasing positions costs only the distance between them."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def __call__(self, pos: int) -> int:
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _json_value(path: Path, text: str, pos: int, line_of: Callable[[int], int], fix: str) -> tuple[Any, int]:
    """One JSON value starting at text[pos]; line_of maps a position in text to the file's line number."""
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{line_of(e.pos)}: invalid JSON ({e.msg} at column {e.colno}); {fix}") from None
    except RecursionError:  # json recurses once per level: [[[[...]]]] 100000 deep exhausts the stack
        raise DataError(f"{path}:{line_of(pos)}: JSON nested too deeply (more levels than Python can read, about "
                        "1000); flatten that value") from None
    except ValueError:  # the only other ValueError json raises: an integer of more than 4300 digits
        raise DataError(f"{path}:{line_of(pos)}: a number too long to read (over 4300 digits); write it as a "
                        "string") from None


def _skip(text: str, pos: int, chars: str = " \t\r\n") -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _read_json(path: Path, text: str) -> list[Row]:
    """JSON lines, a JSON array of objects, or one JSON object: a row, or a wrapper holding the rows in one list
    ({"data": [...]}). The extension does not decide: .json files are often JSON lines and vice versa."""
    lines = _Lines(text)
    start = _skip(text, 0)
    if text.startswith("[", start):
        rows, end = _array_rows(path, text, start, lines)
        if _skip(text, end) < len(text):
            raise DataError(f"{path}:{lines(_skip(text, end))}: more text after the JSON array that closes on line "
                            f"{lines(end)}; remove it or move it inside the array")
        return rows
    try:
        rows = _json_lines(path, text)
    except DataError as line_error:
        newline = text.find("\n", start)
        first = text[start:newline if newline >= 0 else len(text)].rstrip()
        if not (first.startswith("{") and first.endswith(("{", "[", ",", ":"))):
            raise  # a broken line in JSON lines
        # The first line opens an object and does not close it: one pretty-printed JSON document?
        try:
            obj, end = _json_value(path, text, start, lines, "fix the JSON there")
        except DataError:
            if data_suffix(path) == ".jsonl":  # the user meant JSON lines: report the broken line
                raise line_error from None
            raise
        if _skip(text, end) < len(text):
            raise DataError(f"{path}:{lines(_skip(text, end))}: more JSON after the object that ends on line "
                            f"{lines(end)}; put the objects in a JSON array [...] or write one object per line")
        rows = [(f"{path}:{lines(start)}", obj)]
    return _unwrap(path, text, start, rows, lines) if len(rows) == 1 else rows


def _json_lines(path: Path, text: str) -> list[Row]:
    rows = []
    # Lines end at \n, \r\n or \r only, as when reading the file as text: str.splitlines() would also split at
    # U+2028 and friends, which json.dumps(ensure_ascii=False) writes inside strings.
    for number, line in enumerate(io.StringIO(text, newline=None), 1):
        # Files joined with `cat` keep each part's byte-order mark; without its line end, a line cut short is
        # reported at its own last column, not at column 1 of a next line.
        line = line.lstrip("\ufeff").rstrip("\n")
        if not line.strip():
            continue
        obj, end = _json_value(path, line, _skip(line, 0), lambda _, n=number: n, "fix or delete the line")
        if _skip(line, end) < len(line):
            raise DataError(f"{path}:{number}: more text after the JSON value at column {end + 1}; write one "
                            "object per line")
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{number}: expected a JSON object {{...}}, got {type(obj).__name__}; write one "
                            'object per line, e.g. {"instruction": ..., "output": ...}')
        rows.append((f"{path}:{number}", obj))
    return rows


def _unwrap(path: Path, text: str, start: int, rows: list[Row], lines: _Lines) -> list[Row]:
    """A file holding one object: the row itself, or (many public datasets) {"data": [rows]} — read that list."""
    obj = rows[0][1]
    table = _pandas_rows(obj)
    if table is not None:
        log_once(log, f"{path}: a table as pandas' to_json writes it; reading its {len(table)} rows")
        return [(f"{path}:row {i}", row) for i, row in enumerate(table, 1)]
    if ROW_KEYS & set(obj):
        return rows
    lists = [k for k, v in obj.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(lists) > 1:
        raise DataError(f"{path}:{lines(start)}: the file is one JSON object whose keys {', '.join(map(repr, lists))} "
                        "each hold a list of rows; keep only the list to train on, or save each as its own file")
    if not lists:
        return rows
    log_once(log, f"{path}: one JSON object; reading the rows from its '{lists[0]}' list")
    pos = text.index("{", start) + 1  # walk the members to where that list starts, so its rows keep their lines
    while True:
        key, pos = _DECODER.raw_decode(text, _skip(text, pos, " \t\r\n,"))
        pos = _skip(text, _skip(text, pos) + 1)  # past the ':'
        if key == lists[0] and text.startswith("[", pos):
            return _array_rows(path, text, pos, lines)[0]
        pos = _DECODER.raw_decode(text, pos)[1]


def _pandas_rows(obj: dict) -> list[dict] | None:
    """The rows of a DataFrame saved by `df.to_json(path)`: {column: {index: value}} (the default), orient='index'
    ({index: {column: value}}) or orient='split' ({columns, index, data}); None for any other object. Index labels
    are numbers, as a DataFrame read from rows numbers them."""
    def numbered(keys) -> bool:
        return bool(keys) and all(isinstance(k, str) and k.isdigit() for k in keys)

    values = list(obj.values())
    if values and all(isinstance(v, dict) for v in values):
        if numbered(values[0]) and all(v.keys() == values[0].keys() for v in values):  # {column: {index: value}}
            return [{column: obj[column][index] for column in obj} for index in values[0]]
        if numbered(obj):  # {index: {column: value}}
            return values
    if set(obj) in ({"columns", "index", "data"}, {"columns", "data"}) and isinstance(obj["columns"], list) \
            and isinstance(obj["data"], list) and all(isinstance(r, list) for r in obj["data"]):
        return [dict(zip(obj["columns"], r)) for r in obj["data"]]
    return None


def _array_rows(path: Path, text: str, pos: int, lines: _Lines) -> tuple[list[Row], int]:
    """The objects of the JSON array starting at text[pos] == '[', each with the line it starts on."""
    rows: list[Row] = []
    pos += 1
    while True:
        pos = _skip(text, pos, " \t\r\n,")
        if pos >= len(text):
            raise DataError(f"{path}:{lines(len(text.rstrip()))}: the JSON array is not closed; add the final ]")
        if text[pos] == "]":
            return rows, pos + 1
        line = lines(pos)
        obj, pos = _json_value(path, text, pos, lines, "fix the element")
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{line}: element {len(rows) + 1} should be a JSON object {{...}}, got "
                            f"{type(obj).__name__}; make every element an object")
        rows.append((f"{path}:{line}", obj))


def _read_csv(path: Path, text: str) -> list[Row]:
    rows: list[Row] = []
    done = 0  # the last line of the last complete row (0: the header is not read yet)
    old_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    delimiter = _delimiter(path, text)
    # strict: a quote left open fails at the end of the file instead of silently swallowing every later row.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    try:
        for obj in reader:
            if None in obj:
                raise DataError(f"{path}:{reader.line_num}: more fields than the header has; quote "
                                "fields that contain the separator")
            rows.append((f"{path}:{reader.line_num}", obj))
            done = reader.line_num
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise DataError(f"{path}:{done + 1}: a quoted field in this row is never closed; "
                            'close the quote (a quote inside a field is written "")') from None
        raise DataError(f"{path}:{done + 1}: malformed CSV ({e}); fix the quoting in this row (a quote inside a "
                        'field is written "")') from None
    finally:
        csv.field_size_limit(old_limit)
    if not rows and reader.fieldnames:  # a CSV without a header row loses its only data line to the header
        raise DataError(f"{path}:1: only the header line {_short_list(reader.fieldnames)} and no rows; the first line "
                        "of a CSV is always the header (e.g. instruction,output): add it, or add rows below it")
    return rows


def _delimiter(path: Path, text: str) -> str:
    """Tabs in a .tsv; in a .csv, commas unless the header has none but has semicolons (Excel's CSV where the decimal
    mark is a comma, as in most of Europe) or tabs."""
    if data_suffix(path) == ".tsv":
        return "\t"
    header = text.split("\n", 1)[0]
    if "," not in header:
        for other, name in ((";", "semicolons"), ("\t", "tabs")):
            if other in header:
                log_once(log, f"{path}: columns separated by {name}")
                return other
    return ","


def _short_list(names: list[str]) -> str:
    text = ",".join(names)
    return f"'{text}'" if len(text) <= 80 else f"'{text[:80]}...'"


def _read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading .parquet files needs pyarrow; pip install pyarrow") from None
    try:
        with open(path, "rb") as fh:  # check the magic first, so a renamed text file is called what it is
            head = fh.read(64)
    except OSError as e:
        raise _unreadable(path, e) from None
    if not head.startswith(b"PAR1"):
        what = "empty" if not head else "text" if b"\0" not in head else "some other binary format"
        raise DataError(f"{path}: not a parquet file (it is {what}); export it again as parquet, or give it the "
                        "extension of its real format (.jsonl, .json, .csv, .txt)")
    try:
        objects = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...; its first line says what is wrong
        first = _arrow_reason(e)
        raise DataError(f"{path}: corrupt or truncated parquet file ({first}); download or export it "
                        "again") from None
    return [(f"{path}:row {number}", obj) for number, obj in enumerate(objects, 1)]


def _arrow_reason(e: Exception) -> str:
    """pyarrow's reason without its preamble: "Could not open Parquet input source '<path>': Parquet magic bytes
    not found in footer. Either the file..." becomes "Parquet magic bytes not found in footer"."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    first = first.split("': ", 1)[-1].split(". ", 1)[0].rstrip(".")
    return first[:120]


def _read_text(path: Path, text: str) -> list[Row]:
    """Plain text for pretraining: documents are separated by blank lines."""
    rows: list[Row] = []
    buf: list[str] = []
    first = 1
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            if not buf:
                first = number
            buf.append(raw)
        elif buf:
            rows.append((f"{path}:{first}", {"text": "\n".join(buf)}))
            buf = []
    if buf:
        rows.append((f"{path}:{first}", {"text": "\n".join(buf)}))
    return rows


# Every file type tunesmith reads, in the order messages list them (sources and the Web UI use this one list).
TEXT_READERS: dict[str, Callable[[Path, str], list[Row]]] = {
    ".json": _read_json, ".jsonl": _read_json, ".csv": _read_csv, ".tsv": _read_csv, ".txt": _read_text}
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")
