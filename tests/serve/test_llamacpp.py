"""`--engine llamacpp`: a GGUF exported by tunesmith (Q8_0), served through llama.cpp behind the same API, keys,
errors and metrics. Skipped where llama-cpp-python is not installed (it is an optional extra that compiles)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

import httpx
import openai
import torch
from openai import OpenAI

from tests.serve.conftest import KEY, metric, start, stop
from tunesmith.infer.engine import Request, SamplingParams

QUESTIONS = ["What are the support hours?", "Can I bring my dog?", "How much is a day pass?"]


@pytest.fixture(scope="module")
def gguf(small_run, tmp_path_factory):
    from tunesmith.export import export_run

    return export_run(small_run, tmp_path_factory.mktemp("gguf") / "small", quant="q8_0", progress=False).gguf


@pytest.fixture(scope="module")
def served(gguf):
    from tunesmith.infer import llamacpp

    return llamacpp.load(str(gguf), "small", rows=8)


def test_llamacpp_batches_like_alone_and_agrees_with_transformers(served, gguf):
    assert served.engine.describe() == "llamacpp (gguf)"
    prompts = [served.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
    params = SamplingParams(max_new_tokens=12, temperature=0)
    alone = []
    for ids in prompts:
        r = Request(ids, params)
        served.engine.generate([r])
        alone.append(r.completion_ids)
    together = [Request(ids, params) for ids in prompts]
    served.engine.generate(together)
    assert [r.completion_ids for r in together] == alone
    assert sorted(served.engine.backend.free) == list(range(8))  # every llama.cpp sequence given back

    from tunesmith.infer.loading import load_for_inference

    reference = load_for_inference(str(gguf))  # the same file, de-quantized, through our own engine
    assert reference.encode_chat([{"role": "user", "content": QUESTIONS[0]}]) == prompts[0]
    ours = reference.engine.prefill([Request(prompts[0], params)]).logits[0]
    theirs = served.engine.prefill([Request(prompts[0], params)]).logits[0]
    assert float(torch.nn.functional.cosine_similarity(ours, theirs, dim=0)) > 0.99


def test_serve_gguf_through_llamacpp(gguf):
    proc, base = start(str(gguf), "--name", "small", env={"TUNESMITH_API_KEY": KEY})  # auto: llama.cpp for a .gguf
    try:
        assert httpx.get(f"{base}/health").json()["engines"] == "llamacpp (gguf)"
        client = OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=60)
        messages = [{"role": "user", "content": QUESTIONS[0]}]
        whole = client.chat.completions.create(model="small", messages=messages, max_tokens=10, temperature=0,
                                              logprobs=True, top_logprobs=2, n=2)
        assert len(whole.choices) == 2 and whole.choices[0].message.content == whole.choices[1].message.content
        content = whole.choices[0].logprobs.content
        assert content and all(t.top_logprobs[0].logprob == t.logprob for t in content)
        chunks = list(client.chat.completions.create(model="small", messages=messages, max_tokens=10, temperature=0,
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            whole.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="small", messages=messages, logit_bias={"1": 1})
        assert caught.value.body["param"] == "logit_bias"
        r = httpx.post(f"{base}/v1/chat/completions", content="{oops", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 400
        assert metric(base, "tunesmith_generated_tokens_total") >= 20
        assert metric(base, "tunesmith_responses_total", code="200") == 2
    finally:
        stop(proc)
