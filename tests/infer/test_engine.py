"""Batched decoding gives each request what it would get alone; stop strings, budgets and streaming behave."""

import pytest
import torch

from tests.conftest import fail_sampling_for_seed
from tunesmith.infer.engine import Request, SamplingParams, sample
from tunesmith.infer.loading import load_for_inference


def greedy(n=12, **kw):
    return SamplingParams(max_new_tokens=n, temperature=0, **kw)


def test_batch_equals_one_at_a_time(tiny_model_dir):
    lm = load_for_inference(str(tiny_model_dir))
    prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "What are the hours of support?",
                                                                          "고객센터?")]
    alone = []
    for ids in prompts:
        r = Request(ids, greedy())
        lm.engine.generate([r])
        alone.append(r.completion_ids)
    together = [Request(ids, greedy()) for ids in prompts]
    lm.engine.generate(together)
    assert [r.completion_ids for r in together] == alone
    assert all(r.finish_reason in ("stop", "length") for r in together)


def test_stop_strings_and_streaming_pieces(tiny_model_dir):
    lm = load_for_inference(str(tiny_model_dir))
    ids = lm.encode_chat([{"role": "user", "content": "Hi"}])
    full = Request(ids, greedy(16))
    lm.engine.generate([full])
    assert len(full.text) > 6
    stop = full.text[3:6]
    pieces: list[str] = []
    cut = Request(ids, greedy(16, stop=[stop]), on_text=pieces.append)
    lm.engine.generate([cut])
    assert cut.finish_reason == "stop" and cut.text == full.text[:full.text.find(stop)]
    assert "".join(pieces) == cut.text  # the stop string itself never reaches the stream


def test_sampling_rules():
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    g = torch.Generator().manual_seed(0)
    assert sample(logits.clone(), SamplingParams(temperature=0), set(), g) == 1
    assert sample(logits.clone(), SamplingParams(temperature=1.0, top_k=1), set(), g) == 1
    assert all(sample(logits.clone(), SamplingParams(temperature=1.0, top_p=0.5), set(), g) == 1 for _ in range(20))
    # A repetition penalty pushes an already-seen best token below the next one.
    assert sample(logits.clone(), SamplingParams(temperature=0, repetition_penalty=2.0), {1}, g) == 2
    a = [sample(logits.clone(), SamplingParams(temperature=1.0), set(), torch.Generator().manual_seed(7))
         for _ in range(5)]
    b = [sample(logits.clone(), SamplingParams(temperature=1.0), set(), torch.Generator().manual_seed(7))
         for _ in range(5)]
    assert a == b  # seeded sampling repeats


def test_penalties_in_the_sampler():
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    g = torch.Generator().manual_seed(0)
    # presence: a flat 2.0 off every token already in the answer; frequency: 0.5 per time it appeared
    assert sample(logits.clone(), SamplingParams(temperature=0, presence_penalty=2.0), set(), g, {1: 1}) == 2
    assert sample(logits.clone(), SamplingParams(temperature=0, frequency_penalty=0.5), set(), g, {1: 1}) == 1
    assert sample(logits.clone(), SamplingParams(temperature=0, frequency_penalty=0.5), set(), g, {1: 3}) == 2
    # a temperature too small for float32 (1e-40) is the greedy limit, not a crash
    assert all(sample(logits.clone(), SamplingParams(temperature=1e-40), set(), g) == 1 for _ in range(5))


def alone(lm, prompt, **kw):
    r = Request(prompt, greedy(**kw))
    lm.engine.generate([r])
    return r


def test_fast_path_equals_transformers_forward(tiny_model_dir, embedded_dir):
    """In fp32 the fast path computes what transformers computes, operation for operation: same logits, same
    tokens. Checked on the tiny model (grouped-query attention) and on the real 135M model."""
    for spec, n in ((tiny_model_dir, 16), (embedded_dir, 12)):
        lm = load_for_inference(str(spec))
        prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "What is the capital of France?")]
        fast = lm.engine.use("fp32")
        assert fast.describe() == "fast (fp32)"
        first_fast = fast.prefill([Request(prompts[0], greedy())]).logits
        ours = [alone(lm, p, n=n).completion_ids for p in prompts]
        reference = lm.engine.use("fp32", fast=False)
        assert reference.describe().startswith("transformers")
        assert torch.equal(reference.prefill([Request(prompts[0], greedy())]).logits, first_fast)
        assert [alone(lm, p, n=n).completion_ids for p in prompts] == ours


def test_bf16_path_stays_close_to_fp32(tiny_model_dir):
    lm = load_for_inference(str(tiny_model_dir))
    prompt = lm.encode_chat([{"role": "user", "content": "What are the hours of support?"}])
    fp32 = lm.engine.use("fp32").prefill([Request(prompt, greedy())]).logits
    bf16_engine = lm.engine.use("bf16")
    assert bf16_engine.describe() == "fast (bf16)"
    bf16 = bf16_engine.prefill([Request(prompt, greedy())]).logits
    assert float((bf16 - fp32).norm() / fp32.norm()) < 0.05  # bf16 keeps ~3 significant digits
    r = alone(lm, prompt, n=8)
    assert r.finish_reason in ("stop", "length") and r.error is None


def test_int8_path_stays_close_to_fp32_and_batches(tiny_model_dir):
    """int8 weights for steps of a few rows, the bf16 copy beyond: both stay near fp32, and rows decoded together
    match rows decoded alone."""
    lm = load_for_inference(str(tiny_model_dir))
    prompt = lm.encode_chat([{"role": "user", "content": "What are the hours of support?"}])
    fp32 = lm.engine.use("fp32").prefill([Request(prompt, greedy())]).logits
    engine = lm.engine.use("int8")
    assert engine.describe() == "fast (int8)"
    backend = engine.backend
    attn, qkv = lm.model.model.layers[0].self_attn, backend.layers[0][1]
    assert qkv.int8.dtype == torch.int8
    cache = backend.new_cache()
    backend.prefill_row(cache, prompt)
    assert torch.isfinite(backend.decode(cache, [prompt[-1]])).all()  # one row: the int8 weights
    with torch.no_grad():
        x = torch.randn(1, 1, lm.model.config.hidden_size)
        exact = torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1)
        small = qkv(x.to(torch.bfloat16)).float()
        big = qkv(x.expand(1, 8, -1).to(torch.bfloat16)).float()[:, :1]  # 8 rows: the bf16 copy
    assert float((small - exact).norm() / exact.norm()) < 0.03  # 8-bit weights: ~2 significant digits
    assert float((big - exact).norm() / exact.norm()) < 0.03
    int8 = engine.prefill([Request(prompt, greedy())]).logits  # a prompt: the bf16 copy
    assert float((int8 - fp32).norm() / fp32.norm()) < 0.05
    prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "Hello there", "Tell me more")]
    alone_ids = [alone(lm, p, n=6).completion_ids for p in prompts]
    together = [Request(p, greedy(6)) for p in prompts]  # 3 rows: still the int8 weights, row by row
    lm.engine.generate(together)
    assert [r.completion_ids for r in together] == alone_ids


def test_auto_dtype_picks_int8_only_for_weights_read_from_a_quantized_gguf(tiny_model_dir, monkeypatch):
    from tunesmith.infer import llama_backend

    model = load_for_inference(str(tiny_model_dir)).model
    monkeypatch.setattr(llama_backend, "BF16_MIN_BYTES", 0)  # as if the model were large
    monkeypatch.setattr(llama_backend, "cpu_has_fast_bf16", lambda: True)
    assert [llama_backend.auto_dtype(model, source) for source in ("Q8_0", "Q4_1", "F16", None)] == \
        ["int8", "int8", "bf16", "bf16"]
    monkeypatch.setattr(model.config, "intermediate_size", 120)  # a width torch's int8 kernel gets wrong
    assert llama_backend.auto_dtype(model, "Q8_0") == "bf16"
    with pytest.raises(ValueError, match="multiples of 64"):
        llama_backend.LlamaBackend(model, "int8")
    monkeypatch.setattr(llama_backend, "cpu_has_fast_bf16", lambda: False)  # AVX2 only: bf16 inputs are emulated
    assert {llama_backend.auto_dtype(model, source) for source in ("Q8_0", None)} == {"fp32"}


def test_one_request_fails_or_is_cancelled_alone(tiny_model_dir, monkeypatch):
    """A fault in one request's sampling, a seed torch refuses, or a cancellation: that request leaves the batch;
    its neighbours get exactly what they get alone."""
    lm = load_for_inference(str(tiny_model_dir))
    prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "Hello there", "Tell me more", "X")]
    expected = [alone(lm, p).completion_ids for p in prompts]

    fail_sampling_for_seed(monkeypatch, 666)
    good = [Request(p, greedy()) for p in prompts]
    faulty = Request(prompts[0], greedy(seed=666))
    bad_seed = Request(prompts[1], greedy(seed=1 << 64))  # torch.Generator.manual_seed refuses it
    doomed = Request(prompts[2], greedy())
    batch = lm.engine.prefill([good[0], faulty, bad_seed, good[1], doomed, good[2], good[3]])
    assert bad_seed.finish_reason == "error" and bad_seed not in batch.requests
    lm.engine.step(batch)
    doomed.cancelled = True
    finished = lm.engine.step(batch)
    assert doomed in finished and doomed.finish_reason == "cancelled" and doomed not in batch.requests
    assert faulty.finish_reason == "error" and "injected" in str(faulty.error)
    while batch.requests:
        lm.engine.step(batch)
    assert [r.completion_ids for r in good] == expected


def test_presence_penalty_and_logprobs(tiny_model_dir):
    lm = load_for_inference(str(tiny_model_dir))
    prompt = lm.encode_chat([{"role": "user", "content": "again again again again"}])
    plain = alone(lm, prompt, n=24)
    assert len(set(plain.completion_ids)) < len(plain.completion_ids)  # the random model repeats itself
    penalised = alone(lm, prompt, n=24, presence_penalty=2.0, frequency_penalty=2.0)
    assert penalised.completion_ids != plain.completion_ids
    repeats = lambda ids: len(ids) - len(set(ids))
    assert repeats(penalised.completion_ids) < repeats(plain.completion_ids)

    scored = alone(lm, prompt, n=6, logprobs=3)
    assert scored.completion_ids == plain.completion_ids[:6]  # asking for log-probabilities changes nothing
    assert len(scored.logprobs) == len(scored.completion_ids)
    for entry, token in zip(scored.logprobs, scored.completion_ids):
        assert entry.token == token and len(entry.top) == 3
        assert entry.top[0][0] == token and entry.logprob == entry.top[0][1] <= 0  # greedy took the best one
        assert [lp for _, lp in entry.top] == sorted((lp for _, lp in entry.top), reverse=True)
