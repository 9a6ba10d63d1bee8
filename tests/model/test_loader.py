"""Model loading refuses, in one line and before loading, what would crash inside a library later."""

import pytest

from tests.conftest import run_cli
from tunesmith.errors import ConfigError, ModelError
from tunesmith.model.loader import check_quantizable, pick_device


@pytest.fixture(scope="module")
def narrow_model_dir(tmp_path_factory, embedded_dir):
    """A Llama 32 wide: bitsandbytes' AVX512-BF16 CPU kernel cannot pack it in 4 bits (blocks of 64 inputs)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    out = tmp_path_factory.mktemp("narrow")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_4bit_refuses_widths_bitsandbytes_cannot_pack(narrow_model_dir, tiny_model_dir):
    with pytest.raises(ModelError, match=r"cannot quantize model\.layers\.0\.self_attn\.q_proj \(32 inputs, 32 "
                                         r"outputs\) to 4 bits: it needs inputs in multiples of 64"):
        check_quantizable(str(narrow_model_dir))
    check_quantizable(str(tiny_model_dir))  # the test models are shaped for every 4-bit path
    check_quantizable(str(tiny_model_dir), head="score")


def test_qlora_on_a_narrow_model_is_one_line(narrow_model_dir, alpaca_file, tmp_path):
    result = run_cli("train", f"model={narrow_model_dir}", f"dataset={alpaca_file}", "method=qlora",
                     "max_steps=1", f"output_dir={tmp_path / 'r'}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {narrow_model_dir}: bitsandbytes cannot quantize") and "quantization_bit=8" in line
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize("device, message", [
    ("banana", "device='banana' is not a device"),
    ("cuda:x", "is not a device"),
])
def test_device_names_are_checked(device, message):
    with pytest.raises(ConfigError, match=message):
        pick_device(device)


def test_a_missing_gpu_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="device=cuda: no CUDA GPU is visible"):
        pick_device("cuda")
