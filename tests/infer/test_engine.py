"""Batched decoding gives each request what it would get alone; stop strings, budgets and streaming behave."""

import torch

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
