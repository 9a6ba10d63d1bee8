"""Korean / English: one table per language with the same keys, and the language a browser asks for."""

from __future__ import annotations

import dataclasses
import string

import pytest

from tunesmith.config import TrainConfig
from tunesmith.webui import strings_en, strings_ko
from tunesmith.webui.i18n import Key, Labels, language_from_header, text


def fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys():
    missing_ko = sorted(set(strings_en.STRINGS) - set(strings_ko.STRINGS))
    missing_en = sorted(set(strings_ko.STRINGS) - set(strings_en.STRINGS))
    assert not missing_ko, f"add these keys to src/tunesmith/webui/strings_ko.py: {missing_ko}"
    assert not missing_en, f"add these keys to src/tunesmith/webui/strings_en.py: {missing_en}"


def test_every_config_key_is_explained_in_korean():
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"help.{f.name}" not in strings_ko.STRINGS]
    assert not missing, f"add help.<key> for these config keys to strings_ko.py: {missing}"


def test_translations_fill_the_same_fields_and_are_not_empty():
    for key, english in strings_en.STRINGS.items():
        korean = strings_ko.STRINGS.get(key, english)
        assert english.strip() and korean.strip(), key
        if "{" in english and not key.startswith(("help.", "eval.benchmarks_info")):
            assert fields_of(english) == fields_of(korean), key


@pytest.mark.parametrize("header, lang", [
    ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
    ("en-US,en;q=0.9,ko;q=0.8", "en"),
    ("fr-FR,fr;q=0.9,ko;q=0.5", "ko"),  # the best language we have
    ("de-DE,de;q=0.9", "en"),
    ("", "en"),
    (None, "en"),
    ("en;q=0.2,ko;q=0.7", "ko"),
    ("ko;q=bad,en", "en"),
])
def test_language_from_accept_language(header, lang):
    assert language_from_header(header) == lang


def test_text_fills_values_and_falls_back_to_english():
    assert text("ko", "train.progress_step", step=3, total=10) == "스텝 3/10"
    assert text("xx", "tab.train") == "Train"


def test_labels_relabel_components_on_a_language_switch():
    import gradio as gr

    with gr.Blocks():
        labels = Labels("en")
        box = labels.make(gr.Textbox, label=Key("chat.system"), value="kept as it is")
        radio = labels.make(gr.Radio, choices=[(Key("train.model_embedded"), "embedded")], value="embedded")
        labels.make(gr.Button, value="not translated")
    assert box.label == "System prompt"
    assert labels.components == [box, radio]
    box_update, radio_update = labels.updates("ko")
    assert box_update["label"] == "시스템 프롬프트" and "value" not in box_update
    assert radio_update["choices"] == [("내장 SmolLM2-135M", "embedded")]
