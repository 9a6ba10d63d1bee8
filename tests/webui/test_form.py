"""The Train tab's form: the command it previews is the config it runs, read back by the CLI's own load_config."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.webui import form
from tunesmith.webui.train_form import EMBEDDED, HUB_ID, LOCAL_PATH, WIDGET_FIELDS, form_values, widget_values


def tricky_values() -> dict:
    """Values whose command-line spelling is easy to get wrong: numbers in text, YAML words, spaces, lists."""
    values = form.defaults()
    values.update(model="0x10", dataset="data/my faq.jsonl", output_dir="runs/a b", learning_rate=1e-5,
                  max_steps=7, system="Answer: briefly", template="chatml", columns={"instruction": "q"},
                  lora_target=["q_proj", "v_proj"], resume=True, freeze_modules="", val_dataset="yes",
                  quantization_bit=8, train_on_prompt=True, val_size=0.25, device="cpu", gradient_checkpointing=True)
    return values


def test_preview_command_reads_back_as_the_same_config():
    values = tricky_values()
    extra = form.overrides(values)
    line = form.command_line(None, extra)
    base, parsed = form.parse_command(line)
    assert base is None and parsed == extra
    assert load_config(base, parsed).to_dict() == values
    assert form.build_config(None, extra).to_dict() == values


def test_only_changed_keys_are_in_the_command():
    values = {**form.defaults(), "dataset": "examples/data/haneul_faq.jsonl", "max_steps": 5}
    assert form.command_line(None, form.overrides(values)) == \
        "tunesmith train dataset=examples/data/haneul_faq.jsonl max_steps=5"


def test_a_loaded_config_is_the_base_of_the_command(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text("dataset: data.jsonl\nlearning_rate: 1.0e-3\nmax_steps: 20\n")
    base = form.config_values(path)
    values = {**base, "max_steps": 3}
    line = form.command_line(str(path), form.overrides(values, base))
    assert line == f"tunesmith train {path} max_steps=3"
    assert load_config(*form.parse_command(line)).to_dict() == values


def test_bad_values_stop_with_the_clis_one_line_error():
    values = {**form.defaults(), "dataset": "d.jsonl", "learning_rate": -1.0}
    with pytest.raises(ConfigError, match="learning_rate must be > 0"):
        form.build_config(None, form.overrides(values))


def test_widget_kinds_follow_the_config_types():
    assert form.kind("method") == "choice" and form.kind("train_on_prompt") == "bool"
    assert form.kind("max_steps") == "int" and form.kind("learning_rate") == "float"
    assert form.kind("output_dir") == "text" and form.kind("system") == "optional_text"
    assert form.kind("columns") == "yaml" and form.kind("resume") == "yaml"
    assert form.from_widget("max_steps", 5.0) == 5 and isinstance(form.from_widget("max_steps", 5.0), int)
    assert form.from_widget("system", "  ") is None
    assert form.from_widget("lora_target", "[q_proj, v_proj]") == ["q_proj", "v_proj"]
    assert form.from_widget("columns", "{instruction: q}") == {"instruction": "q"}
    assert form.choices("quantization_bit") == ["4", "8"] and form.from_widget("quantization_bit", "8") == 8
    assert form.to_widget("method", "qlora") == "qlora" and form.from_widget("method", "qlora") == "qlora"


def test_every_config_key_has_exactly_one_widget():
    assert sorted(form.FORM_FIELDS) == sorted(form.FIELDS)
    assert len(set(form.FORM_FIELDS)) == len(form.FORM_FIELDS)


@pytest.mark.parametrize("model, source", [(None, EMBEDDED), ("HuggingFaceTB/SmolLM2-360M-Instruct", HUB_ID)])
def test_form_values_and_widget_values_round_trip(model, source):
    config = {**tricky_values(), "model": model}
    shown = widget_values(config)
    assert shown[0] == source
    assert form_values(*shown) == config
    assert len(shown) == 2 + len(WIDGET_FIELDS)


def test_a_local_model_folder_is_shown_as_a_path(tmp_path):
    assert widget_values({**form.defaults(), "model": str(tmp_path)})[0] == LOCAL_PATH
