"""Merged exports: same function as base + adapter, base dtype kept, shards within the limit, reward heads kept,
quantized bases refused."""

import json

import pytest
import torch
from safetensors import safe_open

from tests.export.conftest import peft_reference, train_run
from tunesmith.export import ExportError, export_run

# fp32 merge: W' = W + s*B@A computed once, versus W@x + s*B@(A@x) at run time - the same sums in another order,
# so logits agree to float32 rounding (~1e-7 relative); 1e-5 absolute on logits of std ~0.1 leaves 100x headroom.
FP32_ATOL = 1e-5


@pytest.mark.parametrize("method", ["lora", "dora", "qlora"])
def test_merged_logits_equal_base_plus_adapter(method, lora_run, tiny_model_dir, small_model_dir, tmp_path,
                                               prompt_ids, small_ids):
    from transformers import AutoModelForCausalLM

    # lora on the SmolLM2-vocabulary model; dora and qlora on the small-vocabulary one (same layers, faster).
    base, ids = (tiny_model_dir, prompt_ids) if method == "lora" else (small_model_dir, small_ids)
    run = lora_run if method == "lora" else train_run(small_model_dir, tmp_path / method, f"method={method}")
    out = export_run(run, tmp_path / "merged", progress=False).out
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())  # a plain model, no peft needed
    # qlora trained against the 4-bit rounding of the base; its export merges into the real (fp32) base, by design.
    reference = peft_reference(run, base)
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=FP32_ATOL, rtol=0)
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float32"
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2  # <|im_end|>: the end-of-answer token the run's tokenizer carries
    assert (out / "chat_template.jinja").read_text() == (run / "chat_template.jinja").read_text()


def test_merge_keeps_a_bf16_base_in_bf16(lora_run, tiny_model_dir, tmp_path, prompt_ids):
    from transformers import AutoModelForCausalLM

    bf16_base = tmp_path / "tiny-bf16"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(bf16_base)
    out = export_run(lora_run, tmp_path / "merged", base=str(bf16_base), progress=False).out
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118 (not iterable)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    reference = peft_reference(lora_run, tiny_model_dir)
    with torch.no_grad():
        a, b = merged(prompt_ids).logits, reference(prompt_ids).logits
    # bf16 keeps 8 mantissa bits: each weight moves by up to 2^-9 of itself, so logits move ~1e-2 of their spread.
    assert ((a - b).abs().max() / b.std()).item() < 0.1


def test_shards_stay_within_the_limit_and_reload(lora_run, tiny_model_dir, tmp_path, prompt_ids):
    from transformers import AutoModelForCausalLM

    # The tiny model is one 12.58 MB embedding plus ~300 KB of layers: 12700KB forces a second shard.
    out = export_run(lora_run, tmp_path / "sharded", max_shard_size="12700KB", progress=False).out
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) == 2
    assert all(p.stat().st_size <= 12_700_000 for p in shards), [p.stat().st_size for p in shards]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        reference = peft_reference(lora_run, tiny_model_dir)(prompt_ids).logits
        torch.testing.assert_close(merged(prompt_ids).logits, reference, atol=FP32_ATOL, rtol=0)


def test_a_limit_below_the_largest_tensor_is_refused(lora_run, tmp_path):
    with pytest.raises(ExportError, match=r"smaller than the largest tensor .*use at least 13MB"):
        export_run(lora_run, tmp_path / "x", max_shard_size="1MB", progress=False)
    with pytest.raises(ExportError, match="write a number and a unit"):
        export_run(lora_run, tmp_path / "y", max_shard_size="big", progress=False)


def test_reward_model_keeps_its_trained_head(rm_run, small_model_dir, tmp_path, small_ids):
    from transformers import AutoModelForSequenceClassification

    from tunesmith.infer.score import RewardModel

    out = export_run(rm_run, tmp_path / "reward", progress=False).out
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    with safe_open(rm_run / "adapter_model.safetensors", "pt") as f:
        trained_head = f.get_tensor("base_model.model.score.weight")
    torch.testing.assert_close(merged.score.weight, trained_head, atol=0, rtol=0)
    reference = peft_reference(rm_run, small_model_dir, reward=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(small_ids).logits, reference(small_ids).logits, atol=FP32_ATOL, rtol=0)
    # The export is a complete reward model: `tunesmith score` loads it like a full-method run.
    scorer = RewardModel(out, device="cpu")
    assert isinstance(scorer.score("What are the support hours?", "8 AM to 9 PM."), float)
    with pytest.raises(ExportError, match="--format hf"):
        export_run(rm_run, tmp_path / "reward-gguf", fmt="gguf", progress=False)


def test_merging_into_a_quantized_base_is_refused(lora_run, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantized = tmp_path / "tiny-nf4"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4"), device_map={"": "cpu"}).save_pretrained(quantized)
    with pytest.raises(ExportError) as error:
        export_run(lora_run, tmp_path / "out", base=str(quantized), progress=False)
    message = str(error.value)
    assert "bitsandbytes 4-bit" in message and "reload the base in bf16/fp32 and merge" in message
    assert "\n" not in message and str(tmp_path) not in message


def test_full_method_runs_are_re_saved_as_they_are(small_model_dir, tmp_path, small_ids):
    from transformers import AutoModelForCausalLM

    run = train_run(small_model_dir, tmp_path / "full", "method=full")
    out = export_run(run, tmp_path / "out", progress=False).out
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(out)(small_ids).logits,
                                   AutoModelForCausalLM.from_pretrained(run)(small_ids).logits, atol=0, rtol=0)
    assert "method `full`" in (out / "README.md").read_text()
    with pytest.raises(ExportError, match="--base only applies to adapter runs"):
        export_run(run, tmp_path / "again", base=str(small_model_dir), progress=False)
