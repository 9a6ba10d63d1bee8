"""What text a data file's bytes hold: UTF-8 (with or without a byte-order mark), or a one-line refusal that names
what the file is instead (a spreadsheet, an archive, UTF-16, a legacy Windows code page) and how to save it as
UTF-8."""

from __future__ import annotations

import codecs
from pathlib import Path

from tunesmith.errors import DataError

EXCEL_CSV = "in Excel use Save As 'CSV UTF-8'"
# Binary files that users rename or mislabel, recognised by their first bytes, and what to do instead.
MAGIC = (
    (b"PK\x03\x04", f"a zip archive (an Excel .xlsx?), not text; {EXCEL_CSV}, or unzip it"),
    (b"\xd0\xcf\x11\xe0", f"an old Excel .xls (or other Office) file, not text; {EXCEL_CSV}"),
    (b"PAR1", "a parquet file, not text; rename it to .parquet"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first (unzstd FILE), or recompress it with gzip"),
)


def decode_text(path: Path, data: bytes) -> str:
    """UTF-8 text with an optional byte-order mark (Excel's 'CSV UTF-8' and Notepad write one)."""
    for magic, what in MAGIC:
        if data.startswith(magic):
            raise DataError(f"{path}: this is {what}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: the file is UTF-16 text; {to_utf8('utf-16')}")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = skip + e.start
        line = data.count(b"\n", 0, at) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[at]:02x} at byte offset {at}); "
                        f"{to_utf8(legacy_encoding(data))}") from None
    nul = text.find("\0")
    if nul >= 0:  # valid UTF-8 but binary, or UTF-16 without a byte-order mark: never text to train on
        raise DataError(f"{path}:{text.count(chr(10), 0, nul) + 1}: contains NUL bytes, so it is binary or UTF-16, "
                        f"not UTF-8 text; {to_utf8('utf-16le')}")  # Windows' UTF-16, without its mark
    return text


# Korean's most frequent syllables: Korean text is mostly made of them, while Japanese or Chinese bytes read as cp949
# (which decodes nearly any pair of high bytes as some Hangul syllable) give rare ones.
COMMON_HANGUL = set("이다는의에가을고하지기로한서리사도어나자대요시니수를은게아해있습그일것"
                    "주부정보인라거면전장상들세원까무과우만여데구제문히내되진비소적분저경신"
                    "성마모안중않운실화오께위동때말물미방러질답변용번합")


def legacy_encoding(data: bytes) -> str:
    """The Windows code page a file that is not UTF-8 most likely has, judged by what its text reads as: Korean
    (cp949, what Excel writes there) when its Hangul is mostly common syllables, Japanese (cp932) when it has kana,
    Chinese (gb18030) when it is mostly ideographs, Cyrillic (cp1251) when whole words are Cyrillic; else western
    European cp1252."""
    def read(encoding: str) -> list[str]:
        try:
            return [ch for ch in data.decode(encoding) if ord(ch) > 127]
        except UnicodeDecodeError:
            return []

    def share(chars: list[str], test) -> float:
        return sum(map(test, chars)) / max(len(chars), 1)

    if share(read("cp949"), COMMON_HANGUL.__contains__) > 0.2:
        return "cp949"
    if share(read("cp932"), lambda ch: "\u3040" <= ch <= "\u30ff") > 0.15:  # hiragana and katakana
        return "cp932"
    latin = data.decode("cp1252", errors="replace")
    wide = [i for i, ch in enumerate(latin) if ord(ch) > 127]
    inside_words = sum(any(latin[j:j + 1].isascii() and latin[j:j + 1].isalpha() for j in (i - 1, i + 1))
                       for i in wide)
    if inside_words >= len(wide) / 2:  # café, Grüße: accented letters inside words of ASCII letters
        return "cp1252"
    if share(read("gb18030"), lambda ch: "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\uffef") > 0.8:
        return "gb18030"
    if share(read("cp1251"), lambda ch: "\u0400" <= ch <= "\u04ff") > 0.8:  # whole words of Cyrillic
        return "cp1251"
    return "cp1252"


def to_utf8(encoding: str) -> str:
    return f"save the file as UTF-8 (Excel: Save As 'CSV UTF-8'; or iconv -f {encoding} -t utf-8 FILE)"
