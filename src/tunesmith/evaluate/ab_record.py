"""One judged A/B pair as a line of a preferences file (jsonl): the record the terminal (`tunesmith eval --judge
human`) and the Web UI's blind A/B both write, so either can read what the other saved.

A line holds the prompt, both answers as shown, the choice (A, B, tie or skip) and which model was shown as A and
which as B: the file is the key to the blinding, so it is not opened mid-session.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesmith.errors import DataError

CHOICES = ("A", "B", "tie", "skip")


@dataclass
class PreferenceRecord:
    index: int  # the prompt's position in the A/B test
    prompt: str
    choice: str  # one of CHOICES
    A: str  # the model (label) whose answer was shown as A
    B: str
    answer_a: str = ""
    answer_b: str = ""

    @property
    def shown(self) -> dict[str, str]:
        return {"A": self.A, "B": self.B}

    def line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"

    @classmethod
    def parse(cls, line: str, where: str) -> "PreferenceRecord":
        problem = DataError(f"{where}: not a preference line written by tunesmith; delete the line or the file")
        try:
            row = json.loads(line)
            record = cls(row["index"], row.get("prompt", ""), row["choice"], row["A"], row["B"],
                         row.get("answer_a", ""), row.get("answer_b", ""))
        except (ValueError, KeyError, TypeError):
            raise problem from None
        if not isinstance(record.index, int) or record.choice not in CHOICES:
            raise problem
        return record


def read_records(path: Path) -> list[tuple[str, PreferenceRecord]]:
    """(path:line, record) for every line of a preferences file; none when it does not exist."""
    if not path.exists():
        return []
    return [(f"{path}:{n}", PreferenceRecord.parse(line, f"{path}:{n}"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]


def append_record(path: Path, record: PreferenceRecord) -> None:
    """Saved at once: quitting or a crash keeps every choice made so far."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(record.line())
