"""The real CLI on bad data files (issue 12): exit code 2, exactly one stderr line `error: ...` naming the file (and
line), no traceback, and nothing written to output_dir, because data is checked before the model loads.

Each case is its own CLI process (a torch import each), so the processes start together from one module fixture and
each parametrised test checks its own result.
"""

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_jsonl

GOOD = {"instruction": "Q", "output": "A"}


def _not_utf8(d: Path):
    path = d / "latin1.jsonl"
    path.write_bytes(((json.dumps(GOOD) + "\n") * 2 + '{"instruction": "caf\xe9", "output": "A"}\n').encode("latin-1"))
    return path, [], f"{path}:3: not valid UTF-8 (byte 0xe9 at byte offset"


FIFO_OPENED: dict[str, threading.Event] = {}


def _fifo(d: Path):
    path = d / "pipe.jsonl"
    os.mkfifo(path)
    opened = FIFO_OPENED[str(path)] = threading.Event()

    def feed():  # valid rows: a CLI that (wrongly) reads the pipe trains and fails this case instead of hanging
        fd = os.open(path, os.O_WRONLY)  # returns once a reader opens the pipe
        opened.set()
        with os.fdopen(fd, "w") as fh:
            fh.write((json.dumps(GOOD) + "\n") * 4)

    threading.Thread(target=feed, daemon=True).start()
    return path, [], f"{path}: not a regular file"


def _parquet_truncated(d: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = d / "cut.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD] * 100), path)
    path.write_bytes(path.read_bytes()[:300])
    return path, [], f"{path}: corrupt or truncated parquet file ("


def _csv_big_cell(d: Path):
    path = d / "long.csv"  # a 200 KiB cell is read; the row after it is the real problem
    path.write_text('instruction,output\nQ,"' + "x" * 200_000 + '"\nQ,\n')
    return path, [], f"{path}:3: 'output' is empty"


def _deep_json(d: Path):
    path = write_jsonl(d / "deep.jsonl", [GOOD, "[" * 100_000 + "]" * 100_000])
    return path, [], f"{path}:2: JSON nested too deeply"


def _conversations_int(d: Path):
    path = write_jsonl(d / "conv.jsonl", [{"conversations": 5}])
    return path, [], f"{path}:1: 'conversations' should be a non-empty list of turns, got int 5; write conversations:"


def _json_object_with_two_lists(d: Path):
    path = d / "splits.json"
    path.write_text(json.dumps({"train": [GOOD] * 3, "test": [GOOD]}, indent=2))
    return path, [], f"{path}:1: the file is one JSON object whose keys 'train', 'test' each hold a list of rows"


def _csv_with_bom(d: Path):
    path = d / "excel.csv"  # Excel's "CSV UTF-8": the columns are found, so the message is about the bad row
    path.write_bytes(b"\xef\xbb\xbfinstruction,output\r\nQ,A\r\nQ,\r\n")
    return path, [], f"{path}:3: 'output' is empty"


def _sft_on_preferences(d: Path):
    path = write_jsonl(d / "prefs.jsonl", [{"prompt": "Q", "chosen": "good", "rejected": "bad"}] * 4)
    return path, [], (f"{path}:1: this is a preference row (chosen/rejected), which stage=sft cannot learn from; "
                      "use stage=dpo or stage=rm")


def _pt_on_conversations(d: Path):
    path = write_jsonl(d / "chat.jsonl", [GOOD] * 4)
    return path, ["stage=pt"], f"{path}:1: stage=pt trains on raw text"


def _dpo_on_sft_rows(d: Path):
    path = write_jsonl(d / "sft.jsonl", [GOOD] * 4)
    return path, ["stage=dpo"], (f"{path}:1: stage=dpo needs preference rows (prompt, chosen, rejected), this row "
                                 "is a conversation")


CASES = {
    "not-utf8": _not_utf8, "fifo": _fifo, "parquet-truncated": _parquet_truncated, "csv-big-cell": _csv_big_cell,
    "deep-json": _deep_json, "conversations-int": _conversations_int,
    "json-object-two-lists": _json_object_with_two_lists, "csv-bom": _csv_with_bom,
    "sft-on-preferences": _sft_on_preferences, "pt-on-conversations": _pt_on_conversations,
    "dpo-on-sft-rows": _dpo_on_sft_rows,
}
if not hasattr(os, "mkfifo"):
    del CASES["fifo"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_model_dir):
    """Every case's CLI run, a few at a time: {case: (dataset, expected, run dir, result) or the exception}."""
    root = tmp_path_factory.mktemp("bad-data")

    def run(case: str):
        try:  # a broken case fails that case, not the whole module
            folder = root / case
            folder.mkdir()
            dataset, extra, expected = CASES[case](folder)
            out = folder / "run"
            result = run_cli("train", f"dataset={dataset}", f"model={tiny_model_dir}", "max_steps=1",
                             f"output_dir={out}", *extra, timeout=300)
            if str(dataset) in FIFO_OPENED and not FIFO_OPENED[str(dataset)].is_set():
                Path(dataset).read_text()  # nobody opened the pipe: open it here so the writer finishes
            return case, (str(dataset), expected, out, result)
        except Exception as e:
            return case, e

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, CASES))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_one_line_and_exit_2(results, case):
    if isinstance(results[case], Exception):
        raise results[case]
    dataset, expected, out, result = results[case]
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr should be one line, got {len(lines)}:\n{result.stderr[-3000:]}"
    assert lines[0].startswith("error: ") and dataset in lines[0], lines[0]
    assert lines[0].startswith(f"error: {expected}"), lines[0]
    assert result.returncode == 2, result.returncode
    assert not out.exists()  # stopped before the run directory (and the model) was touched
