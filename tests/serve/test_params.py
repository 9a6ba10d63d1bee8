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
    r = httpx.post(url, json={"model": "tiny", "prompt": "word " * 600})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt" and "context length" in r.text
    r = httpx.post(url, json={"model": "tiny", "prompt": "Hi", "max_tokens": 2, "echo": False, "best_of": 1,
                              "user": "someone", "metadata": {"k": "v"}, "tools": None})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def respond(client, **kw):
    return client.responses.create(**{"model": "tiny", "input": REPEAT[0]["content"], "max_output_tokens": 16,
                                      "temperature": 0, **kw})


def test_responses_api_answers_as_chat_does(client):
    r, c = respond(client, metadata={"k": "v"}, user="u1", store=True), chat(client)
    assert r.output_text == c.choices[0].message.content and r.object == "response" and r.id.startswith("resp_")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (c.usage.prompt_tokens, c.usage.completion_tokens)
    assert r.status == {"length": "incomplete", "stop": "completed"}[c.choices[0].finish_reason]
    assert (r.incomplete_details is not None) == (r.status == "incomplete")
    assert r.metadata == {"k": "v"} and r.user == "u1" and r.store is False and r.max_output_tokens == 16
    # instructions, then a conversation as clients send it back: the earlier output item verbatim, then text parts
    turns = [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}, r.output[0].model_dump(),
             {"role": "developer", "content": "be brief"}, {"type": "message", "role": "user", "content": "again"}]
    again = respond(client, instructions="You are terse.", input=turns)
    same = chat(client, messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                                  {"role": "assistant", "content": r.output_text},
                                  {"role": "system", "content": "be brief"}, {"role": "user", "content": "again"}])
    assert again.output_text == same.choices[0].message.content and again.instructions == "You are terse."


def test_responses_api_streams_numbered_events_that_add_up(client):
    whole = respond(client, include=["message.output_text.logprobs"], top_logprobs=2)
    events = list(respond(client, include=["message.output_text.logprobs"], top_logprobs=2, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          f"response.{whole.status}"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == whole.output_text == events[-1].response.output_text
    logprobs = whole.output[0].content[0].logprobs
    assert len(logprobs) == whole.usage.output_tokens and "".join(t.token for t in logprobs) == whole.output_text
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob == t.logprob for t in logprobs)
    assert [t.logprob for e in deltas for t in e.logprobs] == [t.logprob for t in logprobs]
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens


@pytest.mark.parametrize("extra, param", [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"extra_body": {"conversation": "conv_1"}}, "conversation"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"background": True}, "background"),
    ({"truncation": "auto"}, "truncation"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"include": ["file_search_call.results"]}, "include"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"extra_body": {"prompt": {"id": "pmpt_1"}}}, "prompt"),
    ({"instructions": ["x"]}, "instructions"),
    ({"input": []}, "input"),
    ({"input": [{"type": "function_call_output", "call_id": "1", "output": "x"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": "word " * 600}, "input"),  # past the tiny model's 512-token context
])
def test_responses_api_refuses_what_it_cannot_honour_by_name(client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**{"model": "tiny", "input": "Hi", "max_output_tokens": 2, **extra})
    assert caught.value.body["param"] == param
    assert param.split(".")[0].split("[")[0] in caught.value.body["message"]
