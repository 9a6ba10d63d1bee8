import pytest

from tunesmith.config import TrainConfig, load_config
from tunesmith.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "dataset: d.jsonl\nlearning_rate: 1.0e-4\nlora_target: q_proj,v_proj\n")
    cfg = load_config(path, ["learning_rate=3e-4", "max_steps=7", "gradient_checkpointing=true",
                             "columns={instruction: q, output: a}", "model="])
    assert cfg.learning_rate == pytest.approx(3e-4)
    assert cfg.max_steps == 7 and cfg.gradient_checkpointing is True
    assert cfg.columns == {"instruction": "q", "output": "a"}
    assert cfg.model is None and cfg.lora_target == "q_proj,v_proj"


def test_overrides_without_file():
    cfg = load_config(None, ["dataset=a.jsonl", "val_size=0.2", "resume=true"])
    assert cfg.val_size == 0.2 and cfg.resume is True


def test_unknown_key_suggests_close_match(tmp_path):
    path = write(tmp_path, "dataset: d.jsonl\nlearnig_rate: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: unknown key 'learnig_rate' \(did you mean 'learning_rate'\?\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        load_config(None, ["dataset=d", "max_step=3"])


@pytest.mark.parametrize("override, message", [
    ("learning_rate=fast", "learning_rate: expected a number"),
    ("max_steps=2.5", "max_steps: expected an integer"),
    ("lr_scheduler=wavy", "lr_scheduler='wavy' is not allowed; choose one of constant"),
    ("optimizer=adam9", "optimizer='adam9' is not allowed"),
    ("template=qwen", "template='qwen' is not allowed; choose one of auto, alpaca"),  # LLaMA-Factory's name
    ("template=qwen", "LLaMA-Factory's named templates, such as qwen or llama2, copy the model's own chat template: "
                      "template=auto"),
    ("per_device_batch_size=0", "per_device_batch_size must be >= 1"),
    ("lora_dropout=1.5", "lora_dropout must be in"),
    ("hf_token=abc", "secrets never go in a config"),
    ("learning_rate", "write it as key=value"),
])
def test_bad_values(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(None, ["dataset=d.jsonl", override])


def test_dataset_required():
    with pytest.raises(ConfigError, match="dataset is required"):
        load_config(None, [])


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "dataset: d.jsonl\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(path)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["dataset=d.jsonl", "learning_rate=5e-5", "lora_target=[q_proj, v_proj]"])
    cfg.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and isinstance(again, TrainConfig)


def test_every_example_config_loads():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "examples").glob("*.yaml")):
        text = path.read_text()
        assert "tunesmith " in text.split("\n", 3)[1] + text.split("\n", 3)[2], f"{path} header has no launch command"
        load_config(path)
