"""The first rows of a dataset as the model will see them, with the part the loss is computed on highlighted.

Rows go through the training stage itself (`Stage.preview`, with the run's tokenizer and template), and each run of
tokens is decoded back to text: what is shown is what training feeds the model, after the template, BOS, the
end-of-answer token and the `cutoff_len` cut.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from tunesmith.config import TrainConfig
from tunesmith.data.formats import to_canonical
from tunesmith.data.packing import IGNORE, Example
from tunesmith.data.sources import read_rows
from tunesmith.stages import get_stage
from tunesmith.webui.i18n import text

# How a piece of a row is shown: prompt (context only), answer (trained on), chosen / rejected (preference pair).
PROMPT, ANSWER, CHOSEN, REJECTED = "prompt", "answer", "chosen", "rejected"


@dataclass
class PreviewRow:
    location: str
    pieces: list[tuple[str, str]]  # (text, PROMPT | ANSWER | CHOSEN | REJECTED)
    tokens: int
    truncated: bool = False  # cut at cutoff_len
    dropped: bool = False  # training skips it: no answer token is left within cutoff_len


def _pieces(example: Example, tokenizer, trained_kind: str) -> list[tuple[str, str]]:
    """Decode consecutive tokens that share a trained / not-trained label into one piece."""
    pieces: list[tuple[str, str]] = []
    group: list[int] = []
    trained = None
    for token, label in zip(example.input_ids, example.labels):
        is_trained = label != IGNORE
        if group and is_trained != trained:
            pieces.append((tokenizer.decode(group), trained_kind if trained else PROMPT))
            group = []
        group.append(token)
        trained = is_trained
    if group:
        pieces.append((tokenizer.decode(group), trained_kind if trained else PROMPT))
    return pieces


def preview_rows(cfg: TrainConfig, tokenizer, template, count: int = 3) -> list[PreviewRow]:
    """The first `count` rows of the first dataset source, encoded by the configured stage exactly as training
    encodes them."""
    source = cfg.dataset[0] if isinstance(cfg.dataset, list) else cfg.dataset
    stage = get_stage(cfg.stage, cfg)
    items = stage.checked(to_canonical(read_rows(source)[:count], cfg.dataset_format, cfg.columns, cfg.system))
    rows = []
    for item in items:
        for shown in stage.preview(item, template, tokenizer):
            if shown.example is None:  # training drops such a row; show it whole, as prompt, so the user sees why
                rows.append(PreviewRow(item.location, [(shown.text, PROMPT)], cfg.cutoff_len, truncated=True,
                                       dropped=True))
            else:
                rows.append(PreviewRow(item.location, _pieces(shown.example, tokenizer, shown.kind),
                                       len(shown.example), truncated=len(shown.example) >= cfg.cutoff_len))
    return rows


def preview_html(rows: list[PreviewRow], lang: str) -> str:
    kinds = {kind for row in rows for _, kind in row.pieces}
    shown = [kind for kind in (ANSWER, CHOSEN, REJECTED) if kind in kinds] or [ANSWER]
    marks = " ".join(f'<mark class="ts-{kind}">{text(lang, f"preview.legend_{kind}")}</mark>' for kind in shown)
    legend = f'<div class="ts-legend">{marks} <span class="ts-prompt">{text(lang, "preview.legend_prompt")}</span></div>'
    blocks = []
    for row in rows:
        body = "".join(
            f'<span class="ts-prompt">{html.escape(piece)}</span>' if kind == PROMPT
            else f'<mark class="ts-{kind}">{html.escape(piece)}</mark>' for piece, kind in row.pieces)
        head = text(lang, "preview.row_head", location=html.escape(row.location), tokens=row.tokens)
        if row.dropped:
            head += f' <strong class="ts-warning">{text(lang, "preview.dropped")}</strong>'
        elif row.truncated:
            head += f' <strong class="ts-warning">{text(lang, "preview.truncated")}</strong>'
        blocks.append(f'<div class="ts-row"><div class="ts-row-head">{head}</div><pre>{body}</pre></div>')
    return f'<div class="ts-preview">{legend}{"".join(blocks)}</div>'
