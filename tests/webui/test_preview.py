"""The dataset preview shows rows exactly as training encodes them, with the trained-on part marked."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tunesmith.config import TrainConfig
from tunesmith.data.formats import to_canonical
from tunesmith.data.packing import IGNORE
from tunesmith.data.sources import read_rows
from tunesmith.data.templates import get_template
from tunesmith.errors import DataError
from tunesmith.stages import get_stage
from tunesmith.webui.preview import ANSWER, CHOSEN, PROMPT, REJECTED, preview_html, preview_rows

ROWS = [{"instruction": "What are the support hours?", "output": "From 8 AM to 9 PM."},
        {"instruction": "고객센터 운영 시간은?", "output": "매일 오전 8시부터 오후 9시까지예요."}]


def preview(tmp_path, tokenizer, rows, count=3, **settings):
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    cfg = TrainConfig(dataset=str(data), **settings).validate()
    return cfg, preview_rows(cfg, tokenizer, get_template(cfg.template, tokenizer), count)


@pytest.mark.parametrize("template", ["auto", "alpaca"])
def test_answers_are_marked_exactly_as_training_masks_them(tmp_path, tokenizer, template):
    cfg, rows = preview(tmp_path, tokenizer, ROWS, template=template)
    tmpl = get_template(template, tokenizer)
    examples = get_stage("sft", cfg).encode(to_canonical(read_rows(cfg.dataset)), tmpl, tokenizer, "train")
    for row, example, source in zip(rows, examples, ROWS):
        trained = "".join(text for text, kind in row.pieces if kind == ANSWER)
        assert trained == source["output"] + tmpl.stop
        assert source["instruction"] in "".join(text for text, kind in row.pieces if kind == PROMPT)
        assert "".join(text for text, _ in row.pieces) == tokenizer.decode(example.input_ids)
        assert trained == tokenizer.decode([t for t, label in zip(example.input_ids, example.labels)
                                            if label != IGNORE])
        assert row.tokens == len(example) and not row.truncated and not row.dropped


def test_only_the_first_rows_and_train_on_prompt(tmp_path, tokenizer):
    _, rows = preview(tmp_path, tokenizer, ROWS * 3, count=2, train_on_prompt=True)
    assert len(rows) == 2
    assert {kind for row in rows for _, kind in row.pieces} == {ANSWER}


def test_a_row_whose_answer_is_cut_off_is_shown_as_dropped(tmp_path, tokenizer):
    _, rows = preview(tmp_path, tokenizer, ROWS[:1], cutoff_len=8)
    assert rows[0].dropped and {kind for _, kind in rows[0].pieces} == {PROMPT}
    assert "skipped by training" in preview_html(rows, "en")


def test_pretraining_text_is_trained_on_everywhere(tmp_path, tokenizer):
    _, rows = preview(tmp_path, tokenizer, [{"text": "Haneul Bikes rents e-bikes. " * 20}], stage="pt", cutoff_len=32)
    assert len(rows) > 1 and all(kind == ANSWER for row in rows for _, kind in row.pieces)
    assert rows[0].tokens == 32


def test_preference_rows_show_the_chosen_and_the_rejected_answer(tmp_path, tokenizer):
    pair = {"prompt": "Support hours?", "chosen": "8 AM to 9 PM.", "rejected": "No idea."}
    _, rows = preview(tmp_path, tokenizer, [pair], stage="dpo")
    assert [next(k for _, k in r.pieces if k != PROMPT) for r in rows] == [CHOSEN, REJECTED]
    assert "8 AM to 9 PM." in "".join(t for t, k in rows[0].pieces if k == CHOSEN)
    html = preview_html(rows, "ko")
    assert 'class="ts-chosen"' in html and 'class="ts-rejected"' in html and "거절된 답변" in html


def test_rows_that_do_not_fit_the_stage_stop_with_the_training_message(tmp_path, tokenizer):
    with pytest.raises(DataError, match="raw text rows need stage=pt"):
        preview(tmp_path, tokenizer, [{"text": "just text"}])
    with pytest.raises(DataError, match="use stage=dpo or stage=rm"):
        preview(tmp_path, tokenizer, [{"prompt": "p", "chosen": "a", "rejected": "b"}])


def test_row_text_is_escaped(tmp_path, tokenizer):
    _, rows = preview(tmp_path, tokenizer, [{"instruction": "<script>alert(1)</script>", "output": "a & b"}])
    html = preview_html(rows, "en")
    assert "<script>" not in html and "&lt;script&gt;" in html and "a &amp; b" in html
