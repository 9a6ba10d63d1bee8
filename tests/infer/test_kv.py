"""Continuous batching: requests joining a running batch get exactly what they would get alone (greedy), on both
decoding paths: the fast one (kv.SlotCache) and transformers' own forward (DynamicCache, left padding).

This also guards infer/kv.py's one reliance on transformers internals (the cache's per-layer tensors)."""

import pytest
import torch

from tunesmith.infer import kv
from tunesmith.infer.engine import Request, SamplingParams
from tunesmith.infer.loading import load_for_inference


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "transformers"])
def test_join_mid_flight_equals_alone(lm, fast):
    engine = lm.engine.use("fp32", fast=fast)
    assert engine.describe().startswith("fast" if fast else "transformers")
    prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "A much longer question here?", "X")]
    params = SamplingParams(max_new_tokens=10, temperature=0)
    alone = []
    for ids in prompts:
        r = Request(ids, params)
        engine.generate([r])
        alone.append(r.completion_ids)

    first = Request(prompts[0], params)
    batch = engine.prefill([first])
    for _ in range(3):
        engine.step(batch)
    if not fast:
        assert kv.can_merge(batch.cache)  # fails if transformers changes its cache layout
    late = [Request(prompts[1], params), Request(prompts[2], params)]
    batch = engine.join(batch, late)
    assert len(batch.requests) == 3
    while batch.requests:
        engine.step(batch)
    assert [first.completion_ids, late[0].completion_ids, late[1].completion_ids] == alone
    lm.engine.use("auto")


def test_finished_rows_take_their_padding_with_them(lm):
    """A batch that never drains must not grow without bound: columns only finished rows needed are dropped."""
    engine = lm.engine.use("fp32", fast=False)
    long_prompt = lm.encode_chat([{"role": "user", "content": "word " * 60}])
    short_prompt = lm.encode_chat([{"role": "user", "content": "Hi"}])
    long = Request(long_prompt, SamplingParams(max_new_tokens=2, temperature=0))
    short = Request(short_prompt, SamplingParams(max_new_tokens=6, temperature=0))
    batch = engine.prefill([long, short])
    while long.finish_reason is None:
        engine.step(batch)
    engine.step(batch)
    assert batch.requests == [short]
    assert batch.state.mask.shape[1] == len(short_prompt) + len(short.completion_ids)
    assert bool(batch.state.mask.all())
    assert batch.cache.get_seq_length() == batch.state.mask.shape[1]
    lm.engine.use("auto")


def test_slot_cache_keeps_rows_packed_and_grows():
    cache = kv.SlotCache(layers=2, kv_heads=1, head_dim=2, dtype=torch.float32, device="cpu", limit=64, capacity=4)
    for row, length in enumerate((3, 5, 2)):
        cache.add_row(length)
        cache.keys[:, row, :, :length] = row + 1
        cache.lengths[row] = length
    assert cache.keys.shape[3] >= 5 and cache.rows == 3
    cache.keep([2, 0])  # row 1 leaves; the others move to the front, in this order
    assert cache.lengths == [2, 3]
    assert torch.all(cache.keys[:, 0, :, :2] == 3) and torch.all(cache.keys[:, 1, :, :3] == 1)
    other = kv.SlotCache(2, 1, 2, torch.float32, "cpu", limit=64, capacity=4)
    other.add_row(40)
    other.keys[:, 0, :, :40] = 9
    other.lengths[0] = 40
    cache.append(other)  # grows to 40 positions, keeping what it held
    assert cache.lengths == [2, 3, 40] and cache.keys.shape[3] >= 40
    assert torch.all(cache.keys[:, 2, :, :40] == 9) and torch.all(cache.keys[:, 0, :, :2] == 3)
    cache.reserve(1, 1000)
    assert cache.keys.shape[3] == 64  # never beyond the model's context


def test_a_linear_attention_model_batches_as_each_request_alone(hybrid_model_dir):
    """Qwen3.5's linear-attention layers keep per-row conv and recurrent states: requests of different lengths share
    a batch (left-padded) and leave it mid-flight, each answered as alone."""
    lm = load_for_inference(str(hybrid_model_dir))
    engine = lm.engine.use("fp32", fast=False)
    prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "A much longer question here?")]
    alone = []
    for ids, n in zip(prompts, (3, 8)):
        r = Request(ids, SamplingParams(max_new_tokens=n, temperature=0))
        engine.generate([r])
        alone.append(r.completion_ids)
    together = [Request(ids, SamplingParams(max_new_tokens=n, temperature=0)) for ids, n in zip(prompts, (3, 8))]
    engine.generate(together)  # the short one leaves after 3 tokens; the long one goes on alone
    assert [r.completion_ids for r in together] == alone


@pytest.mark.filterwarnings("error:`past_key_values` is deprecated:FutureWarning")
def test_the_cache_travels_under_the_name_this_transformers_takes(lm):
    """transformers 5.2x renamed the forward's `past_key_values` to `cache` (the old name goes in 5.40)."""
    engine = lm.engine.use("fp32", fast=False)
    r = Request(lm.encode_chat([{"role": "user", "content": "Hi"}]), SamplingParams(max_new_tokens=3, temperature=0))
    engine.generate([r])
    assert r.completion_ids and r.finish_reason is not None
    lm.engine.use("auto")
