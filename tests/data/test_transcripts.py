"""Chats that public datasets ship already rendered as text are read back as turns for stage=sft (and as the
chosen/rejected conversations of preference rows); plain documents stay documents."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import write_jsonl
from tunesmith.config import TrainConfig
from tunesmith.data.dataset import DataSpec, load_items
from tunesmith.data.formats import Conversation, Document, to_canonical
from tunesmith.data.packing import IGNORE
from tunesmith.data.sources import read_rows
from tunesmith.data.templates import get_template
from tunesmith.data.transcripts import read_transcript
from tunesmith.errors import DataError
from tunesmith.stages import get_stage

TWO_TURNS = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
             {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]
WITH_SYSTEM = [{"role": "system", "content": "Be brief."}, *TWO_TURNS[:2]]


@pytest.mark.parametrize("text, style, turns", [
    ("### Human: Q1### Assistant: A1### Human: Q2### Assistant: A2", "Guanaco", TWO_TURNS),  # openassistant-guanaco
    ("### Human: Q1### Assistant: A1### Human: Q2", "Guanaco", TWO_TURNS[:2]),  # its first row: no last answer
    ("\n\nHuman: Q1\n\nAssistant: A1\n\nHuman: Q2\n\nAssistant: A2", "HH-RLHF", TWO_TURNS),  # Anthropic/hh-rlhf
    ("Human: Q1\n\nAssistant: A1", "HH-RLHF", TWO_TURNS[:2]),  # the same with its first blank lines stripped
    ("<s>[INST] Q1 [/INST] A1 </s><s>[INST] Q2 [/INST] A2 </s>", "Llama 2", TWO_TURNS),  # guanaco-llama2-1k
    ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nQ1 [/INST]\nA1\n", "Llama 2", WITH_SYSTEM),  # with a system prompt
    ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n",
     "ChatML", WITH_SYSTEM),
    ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>", "Llama 3",
     WITH_SYSTEM),
])
def test_rendered_chats_are_read_back_as_turns(text, style, turns):
    name, read = read_transcript(text)
    assert name.startswith(style) and read == turns


@pytest.mark.parametrize("text", [
    "An essay. ### Human: Q1### Assistant: A1",  # mentions a marker, does not open with one
    "Human: just one line of a play",
    "plain text\n\nwith paragraphs",
    "[INST] a prompt with no answer",
])
def test_documents_are_not_transcripts(text):
    assert read_transcript(text) is None


def test_sft_trains_a_guanaco_text_column_as_conversations_and_pt_as_text(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("tunesmith.once._said", set())  # said once per process: maybe by an earlier test
    path = write_jsonl(tmp_path / "guanaco.jsonl", [{"text": "### Human: Q1### Assistant: A1"}, {"text": "plain"}])
    items = to_canonical(read_rows(str(path))[:1])
    assert get_stage("pt", TrainConfig()).checked(items) == items  # pretraining keeps the text as it is
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        sft = get_stage("sft", TrainConfig()).checked(items)
    assert sft == [Conversation(TWO_TURNS[:2], None, f"{path}:1")]
    assert "text rows read as Guanaco's '### Human: / ### Assistant:' chats" in caplog.text
    with pytest.raises(DataError, match=rf"^{path}:2: raw text rows need stage=pt; .* chats rendered as text"):
        load_items(DataSpec(dataset=str(path)), get_stage("sft", TrainConfig()).checked)


def test_the_answers_alone_are_trained_in_the_models_own_template(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "llama2.jsonl", [{"text": "<s>[INST] What is 2+2? [/INST] Four. </s>"}])
    template = get_template("chatml", tokenizer)
    [example] = get_stage("sft", TrainConfig()).encode(to_canonical(read_rows(str(path))), template, tokenizer,
                                                       "train")
    text = tokenizer.decode(example.input_ids)
    assert "[INST]" not in text and "<s>" not in text and "<|im_start|>user\nWhat is 2+2?" in text
    assert tokenizer.decode([t for t, y in zip(example.input_ids, example.labels) if y != IGNORE]) == \
        "Four." + template.stop


def test_a_broken_transcript_names_its_row_and_style_and_the_system_setting_applies(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "### Human: Q1### Assistant: A1"},
                                              {"text": "### Assistant: A1### Human: Q1"}])
    items = to_canonical(read_rows(str(path)), system="Be brief.")
    assert items[0] == Document("### Human: Q1### Assistant: A1", f"{path}:1", "Be brief.")
    sft = get_stage("sft", TrainConfig())
    assert sft.checked(items[:1])[0].system == "Be brief."
    with pytest.raises(DataError, match=rf"^{path}:2 \(text read as Guanaco's .* chat\): turn 1 is 'assistant' but a "
                                        "user turn was expected"):
        sft.checked(items)


def test_preference_rows_of_whole_rendered_chats_share_their_prompt(tmp_path):
    def chatml(answer):
        return f"<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>"

    path = write_jsonl(tmp_path / "p.jsonl", [{"chosen": chatml("good"), "rejected": chatml("bad")}])
    [pair] = to_canonical(read_rows(str(path)))
    assert (pair.messages, pair.chosen, pair.rejected) == ([{"role": "user", "content": "Q1"}], "good", "bad")
