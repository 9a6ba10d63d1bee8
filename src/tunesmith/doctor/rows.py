"""Rows as training encodes them, decoded back into pieces of text labelled trained / not trained.

Every row goes through the configured stage's own `preview` (the same encoding `train` uses: template, BOS,
end-of-turn token, `cutoff_len`), so what is shown is exactly what the model sees. The rendering here is shared by
`tunesmith doctor` and anything else that shows rows (it imports nothing from the Web UI).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.data.packing import IGNORE, Example
from tunesmith.doctor.report import Piece, ShownRow

PROMPT = "prompt"


@dataclass
class Encoded:
    """One encoded example of a row, before and after the `cutoff_len` cut."""

    location: str
    kind: str  # the trained part's kind (answer, chosen, rejected)
    full: Example | None  # encoded without a length limit (None: the stage drops the row whatever the length)
    cut: Example | None  # what training keeps (None: dropped)
    text: str = ""  # the rendered row, for a dropped one


def pieces(example: Example, tokenizer, trained_kind: str) -> list[Piece]:
    """Consecutive tokens that share a trained / not-trained label, decoded as one piece each."""
    out: list[Piece] = []
    group: list[int] = []
    trained = None
    for token, label in zip(example.input_ids, example.labels):
        is_trained = label != IGNORE
        if group and is_trained != trained:
            out.append(Piece(tokenizer.decode(group), trained_kind if trained else PROMPT))
            group = []
        group.append(token)
        trained = is_trained
    if group:
        out.append(Piece(tokenizer.decode(group), trained_kind if trained else PROMPT))
    return out


def encode_all(items, stage, unlimited_stage, template, tokenizer) -> list[Encoded]:
    """Every item through the stage as training encodes it (`stage`) and without the cut (`unlimited_stage`, the
    same stage with a cutoff no row reaches)."""
    out = []
    for item in items:
        for kept, whole in zip(stage.preview(item, template, tokenizer),
                               unlimited_stage.preview(item, template, tokenizer)):
            out.append(Encoded(item.location, kept.kind, whole.example, kept.example, kept.text))
    return out


def shown(encoded: list[Encoded], tokenizer, cutoff_len: int) -> list[ShownRow]:
    rows = []
    for row in encoded:
        if row.cut is None:  # training drops it: show it whole, as prompt, so the user sees why
            rows.append(ShownRow(row.location, [Piece(row.text or _text(row.full, tokenizer), PROMPT)],
                                 len(row.full) if row.full else cutoff_len, truncated=True, dropped=True))
        else:
            rows.append(ShownRow(row.location, pieces(row.cut, tokenizer, row.kind), len(row.cut),
                                 truncated=row.full is not None and len(row.full) > len(row.cut)))
    return rows


def _text(example: Example | None, tokenizer) -> str:
    return tokenizer.decode(example.input_ids) if example is not None else ""
