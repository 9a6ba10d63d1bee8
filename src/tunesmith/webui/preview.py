"""The first rows of a dataset as the model will see them, with the part the loss is computed on highlighted.

Rows go through the training encoders themselves (`encode_conversation`, `encode_documents` with the run's
tokenizer and template), and each run of tokens is decoded back to text: what is shown is what training feeds the
model, after the template, BOS, the end-of-answer token and the `cutoff_len` cut.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from tunesmith.config import TrainConfig
from tunesmith.data.dataset import encode_conversation, encode_documents
from tunesmith.data.formats import Conversation, Document, Preference, to_canonical
from tunesmith.data.packing import IGNORE, Example
from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError
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
    """Encode the first `count` rows of the first dataset source with the settings in `cfg`."""
    source = cfg.dataset[0] if isinstance(cfg.dataset, list) else cfg.dataset
    items = to_canonical(read_rows(source)[:count], cfg.dataset_format, cfg.columns, cfg.system)
    rows = []
    for item in items:
        if cfg.stage == "pt":
            for example in encode_documents([item], tokenizer, cfg.cutoff_len, "preview"):
                rows.append(PreviewRow(item.location, _pieces(example, tokenizer, ANSWER), len(example)))
        elif isinstance(item, Document):
            raise DataError(f"{item.location}: raw text rows need stage=pt; for stage={cfg.stage} use "
                            "instruction/output, conversations or messages rows")
        elif cfg.stage in ("rm", "dpo"):
            if not isinstance(item, Preference):
                raise DataError(f"{item.location}: stage={cfg.stage} needs preference rows (prompt, chosen, rejected)")
            for answer, kind in ((item.chosen, CHOSEN), (item.rejected, REJECTED)):
                rows.append(_conversation_row(item.conversation(answer), tokenizer, template, cfg, kind))
        else:
            if isinstance(item, Preference):
                raise DataError(f"{item.location}: preference rows (chosen/rejected) need stage=rm or stage=dpo")
            rows.append(_conversation_row(item, tokenizer, template, cfg, ANSWER))
    return rows


def _conversation_row(conv: Conversation, tokenizer, template, cfg: TrainConfig, kind: str) -> PreviewRow:
    example = encode_conversation(conv, template, tokenizer, cfg.cutoff_len, cfg.train_on_prompt)
    if example is None:  # training drops such a row; show it whole, as prompt, so the user sees why
        text_all = template.render(tokenizer, conv.messages)
        return PreviewRow(conv.location, [(text_all, PROMPT)], cfg.cutoff_len, truncated=True, dropped=True)
    return PreviewRow(conv.location, _pieces(example, tokenizer, kind), len(example),
                      truncated=len(example) >= cfg.cutoff_len)


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
