"""Continuous batching: requests joining a running batch get exactly what they would get alone (greedy).

This also guards infer/kv.py's one reliance on transformers internals (the cache's per-layer tensors)."""

from tunesmith.infer import kv
from tunesmith.infer.engine import Request, SamplingParams
from tunesmith.infer.loading import load_for_inference


def test_join_mid_flight_equals_alone(tiny_model_dir):
    lm = load_for_inference(str(tiny_model_dir))
    prompts = [lm.encode_chat([{"role": "user", "content": q}]) for q in ("Hi", "A much longer question here?", "X")]
    params = SamplingParams(max_new_tokens=10, temperature=0)
    alone = []
    for ids in prompts:
        r = Request(ids, params)
        lm.engine.generate([r])
        alone.append(r.completion_ids)

    first = Request(prompts[0], params)
    batch = lm.engine.prefill([first])
    for _ in range(3):
        lm.engine.step(batch)
    assert kv.can_merge(batch.cache)  # fails if transformers changes its cache layout
    late = [Request(prompts[1], params), Request(prompts[2], params)]
    batch = lm.engine.join(batch, late)
    assert len(batch.requests) == 3
    lm.engine.step(batch)
    lm.engine.step(batch)
    while batch.requests:
        lm.engine.step(batch)
    assert [first.completion_ids, late[0].completion_ids, late[1].completion_ids] == alone


def test_finished_rows_take_their_padding_with_them(tiny_model_dir):
    """A batch that never drains must not grow without bound: columns only finished rows needed are dropped."""
    lm = load_for_inference(str(tiny_model_dir))
    long_prompt = lm.encode_chat([{"role": "user", "content": "word " * 60}])
    short_prompt = lm.encode_chat([{"role": "user", "content": "Hi"}])
    long = Request(long_prompt, SamplingParams(max_new_tokens=2, temperature=0))
    short = Request(short_prompt, SamplingParams(max_new_tokens=6, temperature=0))
    batch = lm.engine.prefill([long, short])
    while long.finish_reason is None:
        lm.engine.step(batch)
    lm.engine.step(batch)
    assert batch.requests == [short]
    assert batch.mask.shape[1] == len(short_prompt) + len(short.completion_ids)
    assert bool(batch.mask.all())
    assert batch.cache.get_seq_length() == batch.mask.shape[1]
