"""Bad data files: each one stops with a single-line DataError naming the file, the line and the fix (issue 12)."""

import csv
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tunesmith.config import TrainConfig
from tunesmith.data.dataset import DataSpec, load_items
from tunesmith.data.formats import Conversation, Preference, to_canonical
from tunesmith.data.sources import read_rows
from tunesmith.data.templates import get_template
from tunesmith.errors import DataError
from tunesmith.stages import get_stage

GOOD = '{"instruction": "Q", "output": "A"}'
ROWS = [{"instruction": "Q", "output": "A"}] * 2


def error_of(path, fmt="auto") -> str:
    with pytest.raises(DataError) as err:
        to_canonical(read_rows(str(path)), fmt)
    text = str(err.value)
    assert "\n" not in text and len(text) < 600, text
    return text


def load(path):
    return to_canonical(read_rows(str(path)))


# --- 1. not UTF-8 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content", [
    ("bad.jsonl", f"{GOOD}\n{GOOD}\n" + '{"instruction": "caf\xe9", "output": "A"}\n'),
    ("bad.json", f"[{GOOD},\n{GOOD},\n" + '{"instruction": "caf\xe9", "output": "A"}]\n'),
    ("bad.csv", "instruction,output\nQ,A\ncaf\xe9,A\n"),
    ("bad.txt", "doc one\n\ncaf\xe9 two\n"),
])
def test_invalid_utf8_names_line_and_offset(tmp_path, name, content):
    data = content.encode("cp1252")
    (tmp_path / name).write_bytes(data)
    offset = data.index(b"\xe9")
    assert error_of(tmp_path / name) == (
        f"{tmp_path / name}:3: not valid UTF-8 (byte 0xe9 at byte offset {offset}); save the file as UTF-8 "
        "(Excel: Save As 'CSV UTF-8'; or iconv -f cp1252 -t utf-8 FILE)")


@pytest.mark.parametrize("encoding, text", [
    ("cp949", "질문,답변"),  # Excel on Korean Windows saves CSV as cp949
    ("cp949", "자전거 대여료는 얼마인가요?,한 달에 59000원입니다."),
    ("cp932", "営業時間は？,午前8時から午後9時までです。"),
    ("gb18030", "营业时间是什么？,上午八点到晚上九点。"),
    ("cp1251", "Когда вы открыты?,С 8 утра до 9 вечера."),
    ("cp1252", "Grüße aus München,Où est le café?"),
])
def test_a_legacy_code_page_is_named_in_the_fix(tmp_path, encoding, text):
    """The fix names the code page the file was written in (Korean, Japanese, Chinese, Cyrillic, western European
    Windows), not always cp1252."""
    (tmp_path / "d.csv").write_bytes(f"instruction,output\n{text}\n".encode(encoding))
    assert error_of(tmp_path / "d.csv").endswith(f"iconv -f {encoding} -t utf-8 FILE)")


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    """Excel writes ';' between columns where ',' is the decimal mark (most of Europe); .tsv files use tabs."""
    (tmp_path / "eu.csv").write_text("instruction;output\nQ, with a comma;A\n", encoding="utf-8")
    (tmp_path / "t.tsv").write_text("instruction\toutput\nQ;1,5\tA\n", encoding="utf-8")
    (tmp_path / "plain.csv").write_text('instruction,output\n"Q; still one cell",A\n', encoding="utf-8")
    assert [obj for _, obj in read_rows(str(tmp_path / "eu.csv"))] == [{"instruction": "Q, with a comma",
                                                                        "output": "A"}]
    assert [obj for _, obj in read_rows(str(tmp_path / "t.tsv"))] == [{"instruction": "Q;1,5", "output": "A"}]
    assert [obj for _, obj in read_rows(str(tmp_path / "plain.csv"))] == [{"instruction": "Q; still one cell",
                                                                           "output": "A"}]


@pytest.mark.parametrize("name", ["data.xlsx", "data.xls", "data.ods"])
def test_spreadsheets_by_name_say_how_to_save_csv(tmp_path, name):
    (tmp_path / name).write_bytes(b"PK\x03\x04 not read")
    message = error_of(tmp_path / name)
    assert message.startswith(f"{tmp_path / name}: a") and "Save As 'CSV UTF-8'" in message
    assert message.endswith("give the .csv")


def test_utf16_and_nul_bytes_are_not_text(tmp_path):
    (tmp_path / "u16.csv").write_bytes("instruction,output\nQ,A\n".encode("utf-16"))
    assert error_of(tmp_path / "u16.csv") == (f"{tmp_path / 'u16.csv'}: the file is UTF-16 text; save the file as "
                                              "UTF-8 (Excel: Save As 'CSV UTF-8'; or iconv -f utf-16 -t utf-8 FILE)")
    (tmp_path / "nul.txt").write_bytes(b"doc one\n\nbinary\x00\x00junk\n")
    assert error_of(tmp_path / "nul.txt").startswith(f"{tmp_path / 'nul.txt'}:3: contains NUL bytes")


@pytest.mark.parametrize("head, says", [
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx?), not text; in Excel use Save As 'CSV UTF-8'"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls"),
    (b"PAR1", "a parquet file, not text; rename it to .parquet"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first"),
])
def test_binary_file_with_a_text_extension(tmp_path, head, says):
    (tmp_path / "data.csv").write_bytes(head + bytes(range(256)))
    assert error_of(tmp_path / "data.csv").startswith(f"{tmp_path / 'data.csv'}: this is {says}")


# --- 2. unreadable paths --------------------------------------------------------------------------------------

def test_permission_denied(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "locked.jsonl", ROWS)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert error_of(path) == (f"{path}: permission denied; make the file readable (chmod a+r) or copy it somewhere "
                              "you can read")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_for_real(tmp_path):
    path = write_jsonl(tmp_path / "locked.jsonl", ROWS)
    path.chmod(0)
    assert "permission denied" in error_of(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    # A writer feeds the pipe, so code that (wrongly) reads it gets a valid row and fails this test instead of hanging.
    writer = threading.Thread(target=fifo.write_text, args=(GOOD + "\n",), daemon=True)
    writer.start()
    assert error_of(fifo) == (f"{fifo}: not a regular file (a pipe, socket or device); save the data to a file and "
                              "give its path")
    with fifo.open() as fh:  # the reader never opened it: drain it so the writer finishes
        fh.read()
    writer.join()


def test_folder_entries(tmp_path):
    (tmp_path / "empty.jsonl").mkdir()  # a folder named like a file, in a dataset list
    assert error_of(tmp_path / "empty.jsonl") == (f"{tmp_path / 'empty.jsonl'}: no .json, .jsonl, .csv, .tsv, "
                                                  ".parquet, .txt files in this folder or its subfolders")
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "A.JSONL", ROWS)
    (folder / "._A.jsonl").write_bytes(b"\x00\x05\x16\x07\x00")  # a macOS resource fork: hidden, not data
    assert [loc for loc, _ in read_rows(str(folder))] == [f"{folder / 'A.JSONL'}:1", f"{folder / 'A.JSONL'}:2"]


def test_unusable_paths_and_hub_names(tmp_path):
    assert error_of("owner/na me") == ("owner/na me: no such file or folder, and not a hub dataset name (owner/name "
                                       "or owner/name:split); check the path")
    assert "not a hub dataset name" in error_of(f"{tmp_path}/no/such/folder")
    assert error_of("a\0b.jsonl") == "'a\\x00b.jsonl': not a usable path (embedded null byte); check the path"
    assert "not a usable path (File name too long)" in error_of("x" * 5000 + ".jsonl")


# --- 3. parquet -------------------------------------------------------------------------------------------------

def test_corrupt_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS * 50), tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert error_of(tmp_path / "cut.parquet") == (
        f"{tmp_path / 'cut.parquet'}: corrupt or truncated parquet file (Parquet magic bytes not found in footer); "
        "download or export it again")
    (tmp_path / "text.parquet").write_text(GOOD + "\n")
    assert error_of(tmp_path / "text.parquet") == (
        f"{tmp_path / 'text.parquet'}: not a parquet file (it is text); export it again as parquet, or give it the "
        "extension of its real format (.jsonl, .json, .csv, .txt)")
    (tmp_path / "empty.parquet").write_bytes(b"")
    assert "(it is empty)" in error_of(tmp_path / "empty.parquet")


# --- 4. CSV -----------------------------------------------------------------------------------------------------

def test_csv_cells_over_128_kib_are_read(tmp_path):
    before = csv.field_size_limit()
    big = "x" * 300_000
    (tmp_path / "big.csv").write_text(f'instruction,output\nQ,"{big}"\nQ,\n')
    assert error_of(tmp_path / "big.csv").startswith(f"{tmp_path / 'big.csv'}:3: 'output' is empty")
    (tmp_path / "ok.csv").write_text(f'instruction,output\nQ,"{big}"\n')
    [conv] = load(tmp_path / "ok.csv")
    assert conv.messages[1]["content"] == big
    assert csv.field_size_limit() == before  # the process-wide limit is left as it was


def test_csv_quoting_and_header(tmp_path):
    (tmp_path / "open.csv").write_text('instruction,output\nQ,A\nQ,"A\nQ,A\n')
    assert error_of(tmp_path / "open.csv").startswith(f"{tmp_path / 'open.csv'}:3: a quoted field in this row is "
                                                      "never closed; close the quote")
    (tmp_path / "junk.csv").write_text('instruction,output\nQ,A\nQ,"A"x\n')
    assert error_of(tmp_path / "junk.csv").startswith(f"{tmp_path / 'junk.csv'}:3: malformed CSV (")
    (tmp_path / "nohead.csv").write_text("What is X?,It is Y\nWhat is Z?,It is W\n")
    assert "(the first line of a CSV must be its header, e.g. instruction,output)" in error_of(
        tmp_path / "nohead.csv")
    (tmp_path / "oneline.csv").write_text("What is X?,It is Y\n")
    assert error_of(tmp_path / "oneline.csv") == (
        f"{tmp_path / 'oneline.csv'}:1: only the header line 'What is X?,It is Y' and no rows; the first line of a "
        "CSV is always the header (e.g. instruction,output): add it, or add rows below it")


# --- 5. nesting and numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, line", [
    ("deep.jsonl", f"{GOOD}\n" + "[" * 100_000 + "]" * 100_000 + "\n", 2),
    ("deep.json", f"[{GOOD},\n" + '{"output": ' + "[" * 100_000 + "\n", 2),
    ("deepobj.jsonl", f"{GOOD}\n{GOOD}\n" + '{"a": ' * 100_000 + "\n", 3),
])
def test_deeply_nested_json(tmp_path, name, content, line):
    (tmp_path / name).write_text(content)
    assert error_of(tmp_path / name) == (f"{tmp_path / name}:{line}: JSON nested too deeply (more levels than Python "
                                         "can read, about 1000); flatten that value")


def test_number_too_long_and_huge_values_stay_one_short_line(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", ['{"instruction": "Q", "output": ' + "1" * 5000 + "}"])
    assert error_of(path) == f"{path}:1: a number too long to read (over 4300 digits); write it as a string"
    path = write_jsonl(tmp_path / "v.jsonl", [{"instruction": "Q", "output": ["x" * 100_000]}])
    assert error_of(path).startswith(f"{path}:1: 'output' should be text, got list ['xxx")


# --- 6. conversations / messages of the wrong type --------------------------------------------------------------

@pytest.mark.parametrize("row, says", [
    ({"conversations": 5},
     "'conversations' should be a non-empty list of turns, got int 5; write conversations: [{from: ..., value: ...}"),
    ({"conversations": {"from": "human", "value": "hi"}},
     "'conversations' should be a non-empty list of turns, got dict {'from': 'human', 'value': 'hi'}; write"),
    ({"conversations": []}, "'conversations' should be a non-empty list of turns, got an empty list"),
    ({"messages": 5},
     "'messages' should be a non-empty list of turns, got int 5; write messages: [{role: ..., content: ...}, ...]"),
    ({"messages": {"role": "user"}}, "'messages' should be a non-empty list of turns, got dict"),
])
def test_turns_that_are_not_a_list(tmp_path, row, says):
    path = write_jsonl(tmp_path / "c.jsonl", [row])
    assert error_of(path).startswith(f"{path}:1: {says}")


# --- 7. JSON files that are one object, arrays, scalars, empty files ---------------------------------------------

def test_object_holding_the_rows_in_one_list(tmp_path, caplog):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": "1.0", "data": [*ROWS, {"instruction": "Q"}]}, indent=2))
    with caplog.at_level(logging.INFO):
        assert error_of(path).startswith(f"{path}:12: 'output' is missing")  # the third element's own line
    assert f"{path}: one JSON object; reading the rows from its 'data' list" in caplog.text
    path.write_text(json.dumps({"data": ROWS}))  # on one line, and as .jsonl
    assert [c.location for c in load(path)] == [f"{path}:1"] * 2
    (tmp_path / "wrapped.jsonl").write_text(path.read_text())
    assert len(load(tmp_path / "wrapped.jsonl")) == 2


def test_object_with_several_lists_names_them(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": ROWS, "test": ROWS}, indent=2))
    assert error_of(path) == (f"{path}:1: the file is one JSON object whose keys 'train', 'test' each hold a list "
                              "of rows; keep only the list to train on, or save each as its own file")


def test_pretty_printed_objects(tmp_path):
    (tmp_path / "one.json").write_text(json.dumps({"instruction": "Q1", "output": "A1"}, indent=2))
    [conv] = load(tmp_path / "one.json")
    assert conv.messages[1]["content"] == "A1" and conv.location == f"{tmp_path / 'one.json'}:1"
    (tmp_path / "broken.json").write_text('{\n  "data": [\n    ' + GOOD + ',\n    {"instruction": "Q" "o": 1}\n]}\n')
    assert error_of(tmp_path / "broken.json") == (f"{tmp_path / 'broken.json'}:4: invalid JSON (Expecting ',' "
                                                  "delimiter at column 25); fix the JSON there")
    (tmp_path / "two.json").write_text(json.dumps(ROWS[0], indent=2) + "\n" + json.dumps(ROWS[0], indent=2))
    assert error_of(tmp_path / "two.json").startswith(f"{tmp_path / 'two.json'}:5: more JSON after the object "
                                                      "that ends on line 4; put the objects in a JSON array")
    (tmp_path / "tail.json").write_text(f"[{GOOD}]\n[{GOOD}]\n")
    assert error_of(tmp_path / "tail.json").startswith(f"{tmp_path / 'tail.json'}:2: more text after the JSON array")


def test_broken_first_line_of_json_lines_is_still_the_line(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", ['{"instruction": "Q", "output": ', GOOD, GOOD])
    assert error_of(path).startswith(f"{path}:1: invalid JSON (") and error_of(path).endswith("fix or delete the line")


@pytest.mark.parametrize("content, says", [
    ("5\n", ":1: expected a JSON object {...}, got int; write one object per line, e.g. {\"instruction\": ..."),
    ('"hello"\n', ":1: expected a JSON object {...}, got str"),
    ("[1, 2]\n", ":1: element 1 should be a JSON object {...}, got int"),
    ("", ": the file has no rows; add rows or remove it from the dataset"),
    ("  \n\n\t\n", ": the file has no rows"),
    ("[\n", ":1: the JSON array is not closed; add the final ]"),
])
def test_json_top_level_that_is_not_rows(tmp_path, content, says):
    (tmp_path / "x.json").write_text(content)
    assert error_of(tmp_path / "x.json").startswith(f"{tmp_path / 'x.json'}{says}")


# --- 8. byte-order marks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content", [
    ("bom.csv", "instruction,output\r\nQ1,A1\r\n"),
    ("bom.jsonl", '{"instruction": "Q1", "output": "A1"}\n'),
    ("bom.json", '[{"instruction": "Q1", "output": "A1"}]'),
])
def test_utf8_byte_order_mark_is_not_part_of_the_data(tmp_path, name, content):
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + content.encode())
    [conv] = load(tmp_path / name)
    assert conv.messages == [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]
    assert conv.location == f"{tmp_path / name}:{2 if name.endswith('.csv') else 1}"


def test_json_lines_split_only_at_line_ends(tmp_path):
    row = {"instruction": "a\u2028b\x85c", "output": "A"}  # json.dumps(ensure_ascii=False) keeps these raw
    path = tmp_path / "u.jsonl"
    path.write_text((json.dumps(row, ensure_ascii=False) + "\r\n") * 2, encoding="utf-8", newline="")
    assert [obj for _, obj in read_rows(str(path))] == [row, row]


def test_joined_files_keep_their_byte_order_marks(tmp_path):
    (tmp_path / "cat.jsonl").write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n\xef\xbb\xbf" + GOOD.encode() + b"\n")
    assert len(load(tmp_path / "cat.jsonl")) == 2


# --- 9. rows that do not fit the stage --------------------------------------------------------------------------

PREFS = [{"prompt": "Q", "chosen": "good", "rejected": "bad"}] * 3


@pytest.mark.parametrize("stage, rows, says", [
    ("sft", PREFS, ("this is a preference row (chosen/rejected), which stage=sft cannot learn from; use stage=dpo "
                    "or stage=rm, or for stage=sft give an output/answer column (e.g. columns={output: chosen})")),
    ("pt", ROWS, ("stage=pt trains on raw text; give rows with a 'text' column or .txt files (use stage=sft for "
                  "conversations)")),
    ("pt", PREFS, ("stage=pt trains on raw text; give rows with a 'text' column or .txt files (preference rows go "
                   "to stage=dpo or stage=rm)")),
    ("dpo", ROWS, ("stage=dpo needs preference rows (prompt, chosen, rejected), this row is a conversation "
                   "(stage=sft); add 'chosen' and 'rejected' answers or change the stage")),
    ("rm", [{"text": "doc"}], ("stage=rm needs preference rows (prompt, chosen, rejected), this row is raw text "
                               "(stage=pt)")),
    ("sft", [{"text": "doc"}], ("raw text rows need stage=pt; for stage=sft use instruction/output, conversations "
                                "or messages rows")),
])
def test_stage_mismatch_stops_before_any_model(tmp_path, stage, rows, says):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_items(DataSpec(dataset=str(path)), get_stage(stage, TrainConfig()).checked)
    assert str(err.value).startswith(f"{path}:1: {says}")


def test_preference_mapped_to_output_trains_with_sft(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PREFS)
    sft = get_stage("sft", TrainConfig())
    splits = load_items(DataSpec(dataset=str(path), columns={"output": "chosen"}), sft.checked)
    assert all(isinstance(item, Conversation) for item in splits.train)


def test_encode_items_never_blames_cutoff_len_for_preference_rows(tokenizer):
    item = Preference([{"role": "user", "content": "Q"}], "good", "bad", location="p.jsonl:4")
    with pytest.raises(DataError, match=r"^p\.jsonl:4: this is a preference row .* use stage=dpo or stage=rm"):
        get_stage("sft", TrainConfig()).encode([item], get_template("chatml", tokenizer), tokenizer, "train")


def test_a_folder_saved_by_datasets_save_to_disk_is_read_as_its_rows(tmp_path):
    import datasets

    rows = [{"instruction": f"Q{i}", "output": f"A{i}"} for i in range(3)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))  # Arrow + state.json + dataset_info.json
    assert read_rows(str(tmp_path / "one")) == [(f"{tmp_path / 'one'}:row {i + 1}", r) for i, r in enumerate(rows)]
    both = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                                 "test": datasets.Dataset.from_list(rows[2:])})
    both.save_to_disk(str(tmp_path / "dict"))
    assert [r for _, r in read_rows(str(tmp_path / "dict"))] == rows[:2]  # its train split
    assert [r for _, r in read_rows(str(tmp_path / "dict" / "test"))] == rows[2:]
    datasets.DatasetDict({"test": both["test"]}).save_to_disk(str(tmp_path / "no-train"))
    assert error_of(tmp_path / "no-train") == (f"{tmp_path / 'no-train'}: a saved DatasetDict without a 'train' split "
                                               f"(it has test); give one split's folder, e.g. "
                                               f"dataset={tmp_path / 'no-train' / 'test'}")


# --- compressed files and dataset folders as the hub lays them out ------------------------------------------------

def test_compressed_files_are_read_whatever_their_name(tmp_path):
    import bz2
    import gzip
    import lzma

    lines = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "b.csv.bz2").write_bytes(bz2.compress(b"instruction,output\nQ,A\n"))
    (tmp_path / "c.json.xz").write_bytes(lzma.compress(json.dumps(ROWS, indent=1).encode()))
    (tmp_path / "d.jsonl").write_bytes(gzip.compress(lines))  # a download that kept its compression
    for name, last_line in (("a.jsonl.gz", 2), ("b.csv.bz2", 2), ("c.json.xz", 6), ("d.jsonl", 2)):
        rows = read_rows(str(tmp_path / name))
        assert [r for _, r in rows][-1] == ROWS[0] and rows[-1][0] == f"{tmp_path / name}:{last_line}", name
    assert len(read_rows(str(tmp_path))) == 7  # a folder lists them too
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(lines)[:-12])
    cut = tmp_path / "cut.jsonl.gz"
    assert error_of(cut).startswith(f"{cut}: corrupt or truncated gzip file (")
    (tmp_path / "x.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    assert "a compressed parquet file" in error_of(tmp_path / "x.parquet.gz")
    (tmp_path / "data.gz").write_bytes(gzip.compress(lines))
    assert error_of(tmp_path / "data.gz") == (f"{tmp_path / 'data.gz'}: unsupported file type '.gz'; use .json, "
                                              ".jsonl, .csv, .tsv, .parquet or .txt (also compressed: .gz, .bz2, .xz)")


def rows_named(*names):
    return [{"instruction": name, "output": "A"} for name in names]


def test_a_folder_with_split_files_trains_on_its_train_split(tmp_path, caplog):
    write_jsonl(tmp_path / "train.jsonl", rows_named("t1", "t2"))
    write_jsonl(tmp_path / "test.jsonl", rows_named("x"))
    write_jsonl(tmp_path / "latest.jsonl", rows_named("l"))  # 'test' inside a word names no split
    with caplog.at_level(logging.INFO):
        assert [r["instruction"] for _, r in read_rows(str(tmp_path))] == ["t1", "t2"]
    assert "reading train.jsonl; left out latest.jsonl, test.jsonl" in caplog.text
    spec = DataSpec(dataset=str(tmp_path), val_dataset=str(tmp_path), shuffle=False)
    splits = load_items(spec)  # val_dataset= the same folder: its validation split, else its test split
    assert [c.messages[0]["content"] for c in splits.val] == ["x"]
    (tmp_path / "train.jsonl").unlink()  # no train file: the files no split names, never the test one
    assert [r["instruction"] for _, r in read_rows(str(tmp_path))] == ["l"]
    (tmp_path / "latest.jsonl").unlink()
    assert error_of(tmp_path) == (f"{tmp_path}: its files are named for the test split and none for train "
                                  f"(test.jsonl); give the file to use, e.g. dataset={tmp_path / 'test.jsonl'}")


def test_a_hub_dataset_repository_folder(tmp_path):
    """`hf download --repo-type dataset` or `git clone`: README.md, .git, data files in data/ named by split."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n---\n")
    (tmp_path / ".git" / "lfs").mkdir(parents=True)
    write_jsonl(tmp_path / ".git" / "lfs" / "train.jsonl", rows_named("git"))  # never data
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows_named("a", "b")), tmp_path / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows_named("c")), tmp_path / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows_named("v")), tmp_path / "data" / "validation-00000-of-00001.parquet")
    assert [r["instruction"] for _, r in read_rows(str(tmp_path))] == ["a", "b", "c"]
    assert [r["instruction"] for _, r in read_rows(str(tmp_path), "validation")] == ["v"]
    # ultrafeedback_binarized: several train splits, each named in its shards' names, never mixed in silence
    for name in ("train_prefs", "train_sft", "test_prefs"):
        write_jsonl(tmp_path / "uf" / "data" / f"{name}-00000-of-00001.jsonl", rows_named(name))
    uf = tmp_path / "uf"
    assert error_of(uf) == (f"{uf}: 2 train splits (train_prefs, train_sft); give the files of one, e.g. "
                            f"dataset={uf / 'data' / 'train_prefs-00000-of-00001.jsonl'}")
    assert [r["instruction"] for _, r in read_rows(str(uf), "validation")] == ["test_prefs"]
    # gsm8k's layout: one folder per configuration, never mixed in silence
    for config in ("main", "socratic"):
        write_jsonl(tmp_path / "gsm" / config / "train.jsonl", rows_named(config))
        write_jsonl(tmp_path / "gsm" / config / "test.jsonl", rows_named("x"))
    gsm = tmp_path / "gsm"
    assert error_of(gsm) == (f"{gsm}: data files in 2 folders (main, socratic), likely separate configurations of the "
                             f"dataset; give one, e.g. dataset={gsm / 'main'}, or list those to mix")
    assert [r["instruction"] for _, r in read_rows(str(gsm / "socratic"))] == ["socratic"]
    # a split's own folder names the split of the files in it
    write_jsonl(tmp_path / "bysplit" / "train" / "part-1.jsonl", rows_named("p1"))
    write_jsonl(tmp_path / "bysplit" / "dev" / "part-1.jsonl", rows_named("d1"))
    assert [r["instruction"] for _, r in read_rows(str(tmp_path / "bysplit"))] == ["p1"]
    assert [r["instruction"] for _, r in read_rows(str(tmp_path / "bysplit"), "validation")] == ["d1"]


def test_a_saved_dataset_dict_gives_validation_its_own_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows_named("t")),
                          "test": datasets.Dataset.from_list(rows_named("x"))}).save_to_disk(str(tmp_path / "d"))
    assert [r["instruction"] for _, r in read_rows(str(tmp_path / "d"), "validation")] == ["x"]


def test_a_hub_dataset_gives_training_its_train_split_and_validation_its_own(tmp_path, monkeypatch):
    import tunesmith.offline

    repo = tmp_path / "acme-data"  # what the hub (or its cache) holds for acme/data
    write_jsonl(repo / "train.jsonl", rows_named("t"))
    write_jsonl(repo / "test.jsonl", rows_named("x"))
    monkeypatch.setattr(tunesmith.offline, "cached_if_offline", lambda name, kind: str(repo))
    assert [r["instruction"] for _, r in read_rows("acme/data")] == ["t"]
    assert [r["instruction"] for _, r in read_rows("acme/data", "validation")] == ["x"]
    assert [r["instruction"] for _, r in read_rows("acme/data:train", "validation")] == ["t"]  # named: that one
    (repo / "test.jsonl").unlink()
    assert error_of_rows("acme/data", "validation") == ("acme/data: no validation split (it has train); name one: "
                                                       "acme/data:train")


def error_of_rows(source, split):
    with pytest.raises(DataError) as err:
        read_rows(source, split)
    return str(err.value)


def test_a_validation_fraction_of_a_small_dataset_still_holds_a_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(4)])
    splits = load_items(DataSpec(dataset=str(path), val_size=0.1, shuffle=False))
    assert (len(splits.train), len(splits.val)) == (3, 1)
    with pytest.raises(DataError, match=r"val_size=0.1 leaves no training rows out of 1"):
        load_items(DataSpec(dataset=str(write_jsonl(tmp_path / "one.jsonl", [{"text": "x"}])), val_size=0.1))


def test_a_dataset_may_be_a_pattern_or_names_separated_by_commas(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    for name, n in (("a", 2), ("b", 3)):
        write_jsonl(tmp_path / "d" / f"{name}.jsonl", [{"instruction": f"{name}{i}", "output": "x"} for i in range(n)])
    assert [loc for loc, _ in read_rows("d/*.jsonl")] == [f"d/{f}.jsonl:{i}" for f, n in (("a", 2), ("b", 3))
                                                           for i in range(1, n + 1)]
    assert len(read_rows("d/b.jsonl, d/a.jsonl")) == 5
    with pytest.raises(DataError, match=r"^d/\*\.csv: no file matches this pattern"):
        read_rows("d/*.csv")
    with pytest.raises(DataError, match=r"^d/c\.jsonl: file not found"):
        read_rows("d/a.jsonl,d/c.jsonl")


@pytest.mark.parametrize("orient", [None, "index", "split"])
def test_a_dataframe_saved_by_pandas_to_json_is_read_as_rows(tmp_path, orient):
    """df.to_json(path) writes {column: {index: value}} unless told orient='records'."""
    import pandas as pd

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path = tmp_path / "df.json"
    pd.DataFrame(rows).to_json(path, **({"orient": orient} if orient else {}))
    assert read_rows(str(path)) == [(f"{path}:row {i}", row) for i, row in enumerate(rows, 1)]


def test_a_row_whose_answers_are_messages_is_not_taken_for_a_table(tmp_path):
    row = {"chosen": {"role": "assistant", "content": "good"}, "rejected": {"role": "assistant", "content": "bad"}}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(row))
    assert read_rows(str(path)) == [(f"{path}:1", row)]
