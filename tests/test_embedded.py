"""The embedded SmolLM2-135M-Instruct trains for 2 steps through the real CLI (no network, no hub)."""

import json

from tests.conftest import run_cli


def test_embedded_model_two_steps(embedded_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", f"dataset={alpaca_file}", f"output_dir={out}", "max_steps=2", "cutoff_len=128",
                     "per_device_batch_size=2", "gradient_accumulation_steps=1", "lora_rank=4")
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(embedded_dir)
    assert (out / "adapter_model.safetensors").stat().st_size > 0


def test_the_embedded_model_knows_its_gguf_quantization(embedded_dir):
    """Converted once from SmolLM2's Q4_1 GGUF: inference reads that note (auto may decode with int8 weights); an
    adapter trained on it is not the file's weights any more."""
    from tunesmith.infer.loading import load_for_inference
    from tunesmith.model.loader import gguf_weights

    assert gguf_weights(embedded_dir) == "Q4_1"
    assert load_for_inference(None).engine.quantized_from == "Q4_1"
    assert load_for_inference(None, int8=False).engine.quantized_from is None  # evaluation: decoded like the others
    assert gguf_weights(embedded_dir.parent) is None
