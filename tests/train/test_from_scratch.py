"""train_from_scratch: random weights from a folder that holds only a config and a tokenizer (pre-training from
scratch, and the GPU benchmark's 8B shape, which is never written to disk)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli
from tunesmith.model.loader import load_model, random_model, resolve_model


@pytest.fixture(scope="module")
def config_only_dir(tmp_path_factory, tiny_model_dir):
    """The tiny Llama's config.json and tokenizer, without its weights."""
    out = tmp_path_factory.mktemp("config-only")
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            (out / f.name).write_bytes(f.read_bytes())
    return out


def test_random_model_follows_the_config_and_the_seed(config_only_dir):
    torch.manual_seed(3)
    first = random_model(str(config_only_dir), torch.bfloat16, torch.device("cpu"))
    torch.manual_seed(3)
    again = load_model(str(config_only_dir), torch.bfloat16, torch.device("cpu"), from_scratch=True)
    config = json.loads((config_only_dir / "config.json").read_text())
    q = first.model.layers[0].self_attn.q_proj.weight
    assert type(first).__name__ == "LlamaForCausalLM" and len(first.model.layers) == config["num_hidden_layers"]
    assert q.dtype == torch.bfloat16 and q.shape == (config["hidden_size"], config["hidden_size"])
    # the model's own initialisation: normal(0, initializer_range) matrices, norms at one
    assert abs(q.float().std().item() - config["initializer_range"]) < 0.25 * config["initializer_range"]
    assert torch.equal(first.model.norm.weight, torch.ones_like(first.model.norm.weight))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_random_model_quantized_is_usable(config_only_dir):
    pytest.importorskip("bitsandbytes")
    from tunesmith.model.loader import quantization_config

    model = random_model(str(config_only_dir), torch.float32, torch.device("cpu"),
                         quantization_config(4, dtype=torch.float32))
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all() and logits.std() > 0  # weights were drawn, then quantized as they loaded


def test_full_training_from_a_config_only_folder_keeps_the_model(config_only_dir, alpaca_file, tmp_path):
    out = tmp_path / "scratch"
    result = run_cli("train", f"model={config_only_dir}", f"dataset={alpaca_file}", "method=full",
                     "train_from_scratch=true", "max_steps=2", "learning_rate=1e-3", f"output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.safetensors").exists()
    chat = run_cli("chat", str(out), "--max-new-tokens", "4", stdin="hello\n")
    assert chat.returncode == 0, chat.stderr[-2000:]


def test_an_adapter_on_a_random_base_says_it_cannot_load(config_only_dir, alpaca_file, tmp_path):
    out = tmp_path / "lora"
    result = run_cli("train", f"model={config_only_dir}", f"dataset={alpaca_file}", "train_from_scratch=true",
                     "max_steps=1", f"output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "random base weights are not saved" in result.stderr
    chat = run_cli("chat", str(out), stdin="hello\n")
    assert chat.returncode != 0
    [line] = chat.stderr.strip().splitlines()
    assert "trained on random base weights (train_from_scratch=true)" in line and "method=full" in line


def test_without_the_flag_a_config_only_folder_is_one_line(config_only_dir, alpaca_file, tmp_path):
    assert resolve_model(str(config_only_dir)) == str(config_only_dir)
    result = run_cli("train", f"model={config_only_dir}", f"dataset={alpaca_file}", "max_steps=1",
                     f"output_dir={tmp_path / 'r'}")
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {config_only_dir}: this folder holds a config.json but no weights")
    assert "train_from_scratch=true" in line


def test_doctor_names_the_missing_weights_unless_training_from_scratch(config_only_dir, alpaca_file):
    from tunesmith.config import load_config
    from tunesmith.doctor import doctor
    from tunesmith.doctor.report import PROBLEM

    settings = [f"model={config_only_dir}", f"dataset={alpaca_file}"]
    [found] = [f for f in doctor(load_config(None, settings), rows=0, memory=False).findings if f.check == "model"]
    assert found.status == PROBLEM and "no weights" in found.verdict and "train_from_scratch=true" in found.fix
    scratch = doctor(load_config(None, [*settings, "train_from_scratch=true"]), rows=0, memory=False)
    assert not [f for f in scratch.findings if f.check == "model"]
