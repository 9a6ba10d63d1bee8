"""GGUF round trip: gguf's own reader sees the right tensors and tokenizer/template metadata; llama.cpp itself
(llama-cpp-python, installed by the README's test command) and transformers' GGUF loader (`gguf_file=`) give logits
close to the merged model - as close as each weight type allows - for every architecture the writer supports."""

import json

import numpy as np
import pytest
import torch

from tunesmith.export import ExportError, export_run
from tunesmith.export.gguf_writer import write_gguf

# Logit error relative to the spread (sd) of the logits, on the tiny random model (hidden 64, 2 layers). A logit is
# a sum of many products; independent per-weight rounding errors grow with the sum just as the signal does, so the
# relative logit error is about the relative per-weight error, compounded over the layers and the head:
#   f16  - 10 stored mantissa bits: error uniform within +-2^-11, sd 2.8e-4        -> measured rms 3.2e-4
#   bf16 - 7 stored bits: within +-2^-8, sd 2.3e-3                                  -> measured rms 2.4e-3
#   q8_0 - blocks of 32 share a scale absmax/127; absmax of 32 normal weights ~2.1 sd, so the
#          rounding error sd is 2.1/127/sqrt(12) = 0.5% of a weight's sd           -> measured rms 0.8%
#   q4_0 - scale absmax/8: error sd ~7.6% (the embedding/head matrix stays q8_0)   -> measured rms 5.9%
# Bounds are 3-6x those numbers; the max |diff| over ~80 positions x 400 logits runs ~5x the rms. Greedy (argmax)
# agreement: q4_0 noise is the size of a random model's top-2 gap, so only it may flip a few positions.
TOLERANCE = {  # quant: (max rms / sd, max |diff| / sd, min argmax agreement)
    "f16": (2e-3, 1e-2, 1.0),
    "bf16": (1e-2, 8e-2, 0.95),
    "q8_0": (3e-2, 0.2, 0.9),
    "q4_0": (0.2, 1.2, 0.6),
}
LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down")


@pytest.fixture(scope="module")
def merged(small_run):
    from tunesmith.export.merge import load_merged
    from tunesmith.run import RunDir

    info = RunDir.open(small_run)
    model, tokenizer = load_merged(info)
    return info, model, tokenizer


def _field(reader, key):
    return reader.fields[key].contents()


def compare(model, folder, name, ids) -> tuple[float, float, float]:
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    with torch.no_grad():
        ref, got = model(ids).logits[0].float(), loaded(ids).logits[0]
    sd = ref.std().item()
    diff = got - ref
    return (diff.pow(2).mean().sqrt().item() / sd, diff.abs().max().item() / sd,
            (got.argmax(-1) == ref.argmax(-1)).float().mean().item())


def test_gguf_reads_back_with_tensors_tokenizer_and_template(lora_run, tmp_path):
    import gguf
    from transformers import AutoTokenizer

    result = export_run(lora_run, tmp_path / "faq-bot", quant="q4_0", progress=False)
    assert result.gguf.name == "faq-bot.Q4_0.gguf"
    assert sorted(p.name for p in result.files) == ["Modelfile", "README.md", "faq-bot.Q4_0.gguf"]
    reader = gguf.GGUFReader(result.gguf)
    tensors = {t.name: t for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{t}.weight" for i in range(2) for t in LAYER_TENSORS}
    assert set(tensors) == expected  # tied embeddings: no separate output.weight, as llama.cpp expects
    # GGUF lists dimensions innermost first: the reverse of PyTorch's shape.
    assert list(tensors["token_embd.weight"].shape) == [64, 49152]
    assert list(tensors["blk.0.attn_k.weight"].shape) == [64, 32]
    assert list(tensors["blk.1.ffn_down.weight"].shape) == [128, 64]
    types = {name: t.tensor_type.name for name, t in tensors.items()}
    assert types["token_embd.weight"] == "Q8_0"  # the vocabulary matrix keeps 8 bits under q4_0
    assert types["blk.0.attn_q.weight"] == types["blk.1.ffn_up.weight"] == "Q4_0"
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"

    tokenizer = AutoTokenizer.from_pretrained(lora_run)
    spec = json.loads((lora_run / "tokenizer.json").read_text())
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "general.name") == "faq-bot"
    assert _field(reader, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q4_0)
    assert _field(reader, "llama.block_count") == 2 and _field(reader, "llama.attention.head_count_kv") == 2
    assert _field(reader, "llama.rope.dimension_count") == 16  # head_dim = 64 / 4 heads
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "smollm"  # llama.cpp's name for this tokenizer's splitting
    tokens = _field(reader, "tokenizer.ggml.tokens")
    vocab = tokenizer.get_vocab()
    assert len(tokens) == 49152 and all(vocab[t] == i for i, t in enumerate(tokens))
    token_types = _field(reader, "tokenizer.ggml.token_type")
    assert token_types[0] == token_types[2] == 3 and token_types[1000] == 1  # control vs normal
    assert len(_field(reader, "tokenizer.ggml.merges")) == len(spec["model"]["merges"])
    assert _field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id == 1
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id == 2
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert _field(reader, "tokenizer.chat_template") == (lora_run / "chat_template.jinja").read_text()


@pytest.mark.parametrize("quant", ["f16", "bf16", "q8_0", "q4_0"])
def test_gguf_loads_in_transformers_with_close_logits(quant, merged, small_ids, tmp_path):
    from transformers import AutoTokenizer

    info, model, tokenizer = merged
    path = write_gguf(model, tokenizer, info.path, tmp_path / f"tiny.{quant.upper()}.gguf", quant, progress=False)
    rms, worst, agree = compare(model, tmp_path, path.name, small_ids)
    max_rms, max_worst, min_agree = TOLERANCE[quant]
    assert rms < max_rms and worst < max_worst and agree >= min_agree, (quant, rms, worst, agree)
    if quant == "f16":  # the tokenizer rebuilt from the metadata alone splits text like the original
        import gguf

        # A vocabulary llama.cpp's hash table cannot know, with GPT-2's own splitting: named for that splitting.
        assert _field(gguf.GGUFReader(path), "tokenizer.ggml.pre") == "gpt-2"
        rebuilt = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
        text = "Support hours?  고객센터 3,000 won <|im_start|>user\nhi<|im_end|>"
        assert rebuilt.encode(text) == tokenizer.encode(text)
        assert rebuilt.chat_template == tokenizer.chat_template


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_other_llama_family_architectures(arch, small_model_dir, small_ids, tmp_path):
    """Qwen2 (q/k/v biases, no q/k permutation) and Mistral (llama layout) round-trip at f16 tolerance."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    config = AutoConfig.for_model(arch, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config).eval()
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    assert bool(biases) == (arch == "qwen2")
    with torch.no_grad():
        for p in biases:  # zero-initialised; make them matter so a misplaced bias would show
            p.normal_(0, 0.5)
    path = write_gguf(model, tokenizer, small_model_dir, tmp_path / f"{arch}.F16.gguf", "f16", progress=False)
    rms, worst, agree = compare(model, tmp_path, path.name, small_ids)
    assert rms < TOLERANCE["f16"][0] and worst < TOLERANCE["f16"][1] and agree == 1.0, (rms, worst, agree)


def llama_cpp_logits(path, ids: torch.Tensor) -> torch.Tensor:
    """The logits llama.cpp computes for `ids` (1, T) from the file alone."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed, so llama.cpp cannot run "
                                    "the file (the README's test command installs it)")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    llm.eval(ids[0].tolist())
    logits = torch.tensor(np.array(llm.scores[:ids.shape[1]]))
    llm.close()
    return logits


def compare_llama_cpp(model, path, ids) -> tuple[float, float, float]:
    with torch.no_grad():
        ref = model(ids).logits[0].float()
    got = llama_cpp_logits(path, ids)
    sd, diff = ref.std().item(), got - ref
    return (diff.pow(2).mean().sqrt().item() / sd, diff.abs().max().item() / sd,
            (got.argmax(-1) == ref.argmax(-1)).float().mean().item())


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_0"])
def test_llama_cpp_runs_the_export_with_close_logits(quant, merged, small_ids, tmp_path):
    info, model, tokenizer = merged
    path = write_gguf(model, tokenizer, info.path, tmp_path / f"tiny.{quant.upper()}.gguf", quant, progress=False)
    rms, worst, agree = compare_llama_cpp(model, path, small_ids)
    max_rms, max_worst, min_agree = TOLERANCE[quant]
    assert rms < max_rms and worst < max_worst and agree >= min_agree, (quant, rms, worst, agree)


LEAVE_OUT = object()  # a size the config class does not take
ARCH_CONFIGS = {  # every model type the writer knows, with what makes it differ from Llama
    "llama": {}, "mistral": {"sliding_window": 4096}, "qwen2": {}, "qwen3": {"head_dim": 16},
    "gemma2": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8},
    "gemma3_text": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8,
                    "layer_types": ["sliding_attention", "full_attention"]},
    "phi3": {}, "gpt_neox": {"num_key_value_heads": LEAVE_OUT, "intermediate_size": 256, "rotary_pct": 0.5},
    "exaone4": {"head_dim": 16, "sliding_window": None, "layer_types": ["full_attention"] * 2},
    # Phi-4-mini's shape: RoPE on 3/4 of each head, LongRoPE; the prompt is longer than the pre-training context
    # here, so transformers and llama.cpp (context 512) both take the long factors
    "phi3-longrope": {"partial_rotary_factor": 0.75, "original_max_position_embeddings": 8, "rope_parameters": {
        "rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0, 1.5, 2.0, 4.0, 8.0, 16.0],
        "short_factor": [1.0, 1.0, 1.1, 1.2, 1.5, 2.0]}},
}


@pytest.mark.parametrize("model_type", list(ARCH_CONFIGS))
def test_every_architecture_runs_in_llama_cpp(model_type, small_model_dir, small_ids, tmp_path):
    """Random weights large enough to matter (biases and Gemma's norm offsets included), f16: llama.cpp's logits
    are the model's to f16 rounding, with prompts longer than Gemma's sliding window."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 256, "initializer_range": 0.2,
             "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
             "eos_token_id": tokenizer.eos_token_id, **ARCH_CONFIGS[model_type]}
    config = AutoConfig.for_model(model_type.split("-")[0], vocab_size=len(tokenizer), **{k: v for k, v in sizes.items()
                                                                             if v is not LEAVE_OUT})
    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    path = write_gguf(model, tokenizer, small_model_dir, tmp_path / f"{model_type}.F16.gguf", "f16", progress=False)
    rms, worst, agree = compare_llama_cpp(model, path, small_ids)
    assert rms < 5e-3 and agree >= 0.95, (model_type, rms, worst, agree)


def test_llama3_rope_scaling_becomes_rope_freqs(small_model_dir, tmp_path):
    """Llama 3.1-style RoPE scaling is stored as llama.cpp's per-frequency divisors: default / scaled frequency."""
    import gguf
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters=rope)
    model = LlamaForCausalLM(config).eval()
    path = write_gguf(model, tokenizer, small_model_dir, tmp_path / "l3.F16.gguf", "f16", progress=False)
    reader = gguf.GGUFReader(path)
    factors = next(t for t in reader.tensors if t.name == "rope_freqs.weight").data
    default = 1.0 / (500000.0 ** (np.arange(0, 32, 2) / 32))
    scaled = model.model.rotary_emb.inv_freq.numpy()
    np.testing.assert_allclose(factors, default / scaled, rtol=1e-5)
    assert factors.min() == 1.0 and factors.max() == 8.0


def test_unsupported_architecture_is_refused(small_model_dir, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(ExportError, match="supports exaone4, gemma2, .*qwen3 models; this is gpt2 - use --format hf"):
        write_gguf(model, tokenizer, small_model_dir, tmp_path / "g.gguf", "f16", progress=False)
    assert not list(tmp_path.glob("*.gguf*"))


def test_concurrent_first_use_conversions_both_succeed(merged, tmp_path):
    """Two processes (a Web UI preview beside a training run, or two ranks) converting the same GGUF at once."""
    import subprocess
    import sys

    info, model, tokenizer = merged
    path = write_gguf(model, tokenizer, info.path, tmp_path / "shared.F16.gguf", "f16", progress=False)
    code = "import sys; from tunesmith.model.loader import resolve_model; print(resolve_model(sys.argv[1]))"
    env = {**__import__("os").environ, "TUNESMITH_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), [err[-1500:] for _, _, err in results]
    folders = {out.strip() for _, out, _ in results}
    assert len(folders) == 1
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(folders.pop())  # complete, loadable


def test_windowed_exaone4_outside_the_32b_shape_is_refused(small_model_dir, tmp_path):
    """transformers gives such a model RoPE on its sliding layers only; llama.cpp would run RoPE and full attention
    on every layer (it reads windows for EXAONE 4 only in the 64-layer shape)."""
    from transformers import AutoTokenizer, Exaone4Config, Exaone4ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    config = Exaone4Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, sliding_window=8,
                           layer_types=["sliding_attention", "full_attention"])
    with pytest.raises(ExportError, match="sliding_window=8 only in its 64-layer .32B. shape; this one has 2 layers"):
        write_gguf(Exaone4ForCausalLM(config), tokenizer, small_model_dir, tmp_path / "e.gguf", "f16", progress=False)
    assert not list(tmp_path.glob("*.gguf*"))
