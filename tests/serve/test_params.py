"""Every request parameter is either honoured (checked for its effect) or refused with a 400 that names it."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.serve.conftest import InProcess

REPEAT = [{"role": "user", "content": "again again again again"}]


@pytest.fixture(scope="module")
def server(tiny_models):
    server = InProcess({"tiny": tiny_models["tiny-a"]})
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server.base}/v1", api_key="none", max_retries=0, timeout=60)


def chat(client, **kw):
    return client.chat.completions.create(**{"model": "tiny", "messages": REPEAT, "max_tokens": 16,
                                             "temperature": 0, **kw})


def test_logprobs_match_the_greedy_choice(client):
    r = chat(client, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob  # greedy = the best
    plain = chat(client)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == r.choices[0].message.content
    text = client.completions.create(model="tiny", prompt="1, 2, 3,", max_tokens=5, temperature=0, logprobs=2)
    lp = text.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(max(top.values()) == best for top, best in zip(lp.top_logprobs, lp.token_logprobs))
    stream = list(chat(client, logprobs=True, stream=True))
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.logprob for t in streamed] == [t.logprob for t in content]


def test_n_gives_n_choices(client):
    r = chat(client, n=2, temperature=1.0, seed=3, max_tokens=12)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content  # choice i draws with seed + i
    assert r.usage.completion_tokens == 2 * 12  # usage counts every choice
    again = chat(client, n=2, temperature=1.0, seed=3, max_tokens=12)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    chunks = list(chat(client, n=3, stream=True, max_tokens=4))
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1, 2}


@pytest.mark.parametrize("penalty", [{"presence_penalty": 2.0}, {"frequency_penalty": 2.0},
                                     {"extra_body": {"repetition_penalty": 1.5}}])
def test_penalties_change_a_repetitive_answer(client, penalty):
    plain = chat(client, max_tokens=24).choices[0].message.content
    penalised = chat(client, max_tokens=24, **penalty).choices[0].message.content
    assert penalised != plain


def test_top_k_and_tiny_temperature_are_greedy(client):
    greedy = chat(client).choices[0].message.content
    assert chat(client, temperature=1.5, seed=1, extra_body={"top_k": 1}).choices[0].message.content == greedy
    assert chat(client, temperature=1e-40).choices[0].message.content == greedy
    assert chat(client, temperature=1.5, seed=1).choices[0].message.content != greedy  # so top_k did the work


def test_stop_max_tokens_and_response_format_text(client):
    r = chat(client, max_completion_tokens=3, response_format={"type": "text"})
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    full = chat(client, max_tokens=12).choices[0].message.content
    cut = chat(client, max_tokens=12, stop=[full[4:7]]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == full[:full.find(full[4:7])]


@pytest.mark.parametrize("extra, param", [
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"extra_body": {"min_p": 0.1}}, "min_p"),
    ({"extra_body": {"model": ["x"]}}, "model"),
    ({"extra_body": {"model": {"name": "tiny"}}}, "model"),
    ({"extra_body": {"stream_options": "yes"}, "stream": True}, "stream_options"),
    ({"extra_body": {"stream_options": [1]}, "stream": True}, "stream_options"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stream_options": {"include_usage": "yes"}, "stream": True}, "stream_options.include_usage"),
    ({"seed": 2 ** 63}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"temperature": 2.5}, "temperature"),
    ({"extra_body": {"temperature": "hot"}}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty"),
    ({"extra_body": {"top_k": -2}}, "top_k"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"extra_body": {"stream": "yes"}}, "stream"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
])
def test_unsupported_or_invalid_parameters_are_400s_naming_them(client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**{"model": "tiny", "messages": REPEAT, "max_tokens": 2, **extra})
    assert caught.value.body["param"] == param
    assert param.split(".")[0].split("[")[0] in caught.value.body["message"]


def test_legacy_completion_fields(server):
    url = f"{server.base}/v1/completions"
    for field, value in (("echo", True), ("best_of", 2), ("suffix", "end")):
        r = httpx.post(url, json={"model": "tiny", "prompt": "Hi", field: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == field
    r = httpx.post(url, json={"model": "tiny", "prompt": ["a", "b"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.post(url, json={"model": "tiny", "prompt": "Hi", "max_tokens": 2, "echo": False, "best_of": 1,
                              "user": "someone", "metadata": {"k": "v"}, "tools": None})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
