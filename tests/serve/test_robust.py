"""The server under abuse, in this process so the engine can be slowed down or made to fail for one request:
abandoned streams are cancelled, a full queue answers 429, a slow request times out, one request's fault stays
its own, two models both progress, and bodies that are too large, too deep or too slow are refused."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import fail_sampling_for_seed
from tests.serve.conftest import InProcess, metric, wait_for

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def serve(tiny_models):
    servers = []

    def make(**limits):
        server = InProcess(tiny_models, **limits)
        servers.append(server)
        return server, OpenAI(base_url=f"{server.base}/v1", api_key="none", max_retries=0, timeout=60)

    yield make
    for server in servers:
        server.close()


def open_stream(base: str, model: str = "tiny-a", max_tokens: int = 400) -> socket.socket:
    """A raw streaming request whose client reads the first event and then never again (or hangs up)."""
    body = json.dumps({"model": model, "messages": QUESTION, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True}).encode()
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert b"200 OK" in sock.recv(65536)
    return sock


def test_abandoned_streams_are_cancelled_and_free_the_server(serve, slow_steps):
    server, client = serve(max_batch=16)
    streams = [open_stream(server.base) for _ in range(16)]
    assert wait_for(lambda: metric(server.base, "tunesmith_running_requests") == 16)
    for sock in streams:
        sock.close()  # 16 clients hang up mid-stream, each with ~400 tokens still to go
    assert wait_for(lambda: metric(server.base, "tunesmith_cancelled_requests_total", reason="disconnect") == 16)
    assert metric(server.base, "tunesmith_running_requests") == 0
    started = time.monotonic()
    r = client.chat.completions.create(model="tiny-a", messages=QUESTION, max_tokens=8, temperature=0)
    assert time.monotonic() - started < 1.0  # a liveness bound: not stuck behind 16 x 400 orphaned tokens
    assert r.usage.completion_tokens == 8


def test_non_streaming_client_that_times_out_is_cancelled(serve, slow_steps):
    server, _ = serve()
    impatient = OpenAI(base_url=f"{server.base}/v1", api_key="none", max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="tiny-a", messages=QUESTION, max_tokens=400, temperature=0)
    assert wait_for(lambda: metric(server.base, "tunesmith_cancelled_requests_total", reason="disconnect") == 1)
    assert wait_for(lambda: metric(server.base, "tunesmith_running_requests") == 0)


def test_request_timeout_is_a_504_and_cancels(serve, slow_steps):
    server, client = serve(request_timeout_s=0.5)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="tiny-a", messages=QUESTION, max_tokens=400, temperature=0)
    assert caught.value.status_code == 504 and caught.value.body["type"] == "server_error"
    assert wait_for(lambda: metric(server.base, "tunesmith_cancelled_requests_total", reason="timeout") == 1)
    assert wait_for(lambda: metric(server.base, "tunesmith_running_requests") == 0)


def test_full_queue_answers_429_with_retry_after(serve, slow_steps):
    server, client = serve(max_batch=1, max_queue=1)
    running = open_stream(server.base)
    waiting = open_stream(server.base)
    assert wait_for(lambda: metric(server.base, "tunesmith_queue_depth") == 1)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="tiny-a", messages=QUESTION, max_tokens=4)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.body["code"] == "queue_full"
    running.close()
    waiting.close()
    assert wait_for(lambda: metric(server.base, "tunesmith_running_requests") == 0
                    and metric(server.base, "tunesmith_queue_depth") == 0)
    assert client.chat.completions.create(model="tiny-a", messages=QUESTION, max_tokens=4).choices


def test_bad_values_in_a_batch_of_8_leave_the_other_answers_intact(serve, monkeypatch, slow_steps):
    """seed 2**63 is refused (400) before it reaches the batch; temperature 1e-40 is the greedy limit; and a fault
    injected into one request's sampling fails that request alone (500 server_error): the others get exactly
    what they get when sent alone."""
    server, client = serve(max_batch=8)
    questions = [f"Question number {i}?" for i in range(8)]

    def ask(i: int, **extra):
        return client.chat.completions.create(**{"model": "tiny-a", "max_tokens": 12, "temperature": 0, **extra,
                                                 "messages": [{"role": "user", "content": questions[i]}]})

    alone = [ask(i).choices[0].message.content for i in range(8)]
    fail_sampling_for_seed(monkeypatch, 4242)
    odd = {0: {"seed": 2 ** 63}, 1: {"temperature": 1e-40}, 2: {"seed": 4242}}

    def one(i: int):
        try:
            return ask(i, **odd.get(i, {})).choices[0].message.content
        except openai.APIStatusError as e:
            return e

    with ThreadPoolExecutor(8) as pool:  # decoded together: each step takes >= 20 ms, all 8 arrive within them
        answers = list(pool.map(one, range(8)))
    assert isinstance(answers[0], openai.BadRequestError) and answers[0].body["param"] == "seed"
    assert answers[1] == alone[1]  # temperature 1e-40 is greedy
    assert isinstance(answers[2], openai.InternalServerError) and answers[2].body["type"] == "server_error"
    assert answers[3:] == alone[3:]
    assert metric(server.base, "tunesmith_errors_total", code="500") == 1


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_a_stream_that_fails_or_runs_out_of_time_ends_with_an_error_event(serve, monkeypatch, slow_steps, endpoint):
    """Once a stream has started, its status is sent: a fault or the request timeout must arrive as the endpoint's
    error event (an error chunk, or response.failed), never as a stream that just stops."""
    server, client = serve(request_timeout_s=1.0)
    fail_sampling_for_seed(monkeypatch, 4242)
    for seed, message in ((4242, "Generation failed"), (1, "took longer")):  # 400 steps of >= 20 ms: past 1 s
        if endpoint == "chat":
            with pytest.raises(openai.APIError, match=message):
                list(client.chat.completions.create(model="tiny-a", messages=QUESTION, max_tokens=400, seed=seed,
                                                    stream=True))
        else:
            events = list(client.responses.create(model="tiny-a", input="Hi", max_output_tokens=400, stream=True,
                                                  extra_body={"seed": seed}))
            assert events[0].type == "response.created" and events[-1].type == "response.failed"
            assert message in events[-1].response.error.message and events[-1].response.status == "failed"
    assert wait_for(lambda: metric(server.base, "tunesmith_running_requests") == 0)
    assert client.responses.create(model="tiny-a", input="Hi", max_output_tokens=3).usage.output_tokens == 3


def test_two_models_both_progress_under_load(serve, slow_steps):
    """Model a is flooded beyond the batch; a request for model b must not wait for a's flood to drain."""
    server, client = serve(max_batch=4)
    floods = [open_stream(server.base, "tiny-a", max_tokens=300) for _ in range(8)]  # 4 run, 4 wait
    assert wait_for(lambda: metric(server.base, "tunesmith_queue_depth") == 4)
    started = time.monotonic()
    r = client.chat.completions.create(model="tiny-b", messages=QUESTION, max_tokens=8, temperature=0)
    waited = time.monotonic() - started
    assert r.model == "tiny-b" and r.usage.completion_tokens == 8
    # a's flood needs 2 x 300 steps of >= 20 ms; b was answered while it still ran
    assert metric(server.base, "tunesmith_queue_depth") + metric(server.base, "tunesmith_running_requests") >= 4
    assert waited < 300 * slow_steps.delay
    for sock in floods:
        sock.close()


def test_bodies_too_large_too_deep_too_slow_or_malformed(serve):
    server, _ = serve(max_body_bytes=1 << 20, body_timeout_s=1.0)
    url = f"{server.base}/v1/chat/completions"
    big = json.dumps({"model": "tiny-a", "messages": [{"role": "user", "content": "x" * (3 << 20)}]})
    r = httpx.post(url, content=big, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    deep = '{"model": "tiny-a", "messages": ' + "[" * 100000 + "]" * 100000 + "}"
    assert httpx.post(url, content=deep[:900000], timeout=30).status_code == 400
    r = httpx.post(url, content='{"messages": ' + "[" * 40 + "1" + "]" * 40 + "}")  # valid JSON, 41 deep
    assert r.status_code == 400 and "nested" in r.json()["error"]["message"]
    for body in ("{not json", "[1, 2]", '{"model": "tiny-a", "messages": "hi"}', "\xff\xfe", "9" * 5000):
        r = httpx.post(url, content=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", body[:20]
    lost = httpx.get(f"{server.base}/v1/nothing-here").json()["error"]
    assert lost["code"] == "not_found" and "GET /v1/nothing-here" in lost["message"] and "/v1/responses" in lost["message"]
    wrong_method = httpx.get(f"{server.base}/v1/responses")
    assert wrong_method.status_code == 405 and "POST /v1/responses" in wrong_method.json()["error"]["message"]
    # a body that never finishes arriving is answered 408 after the body timeout, not held forever
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo")
        sock.settimeout(10)
        assert b" 408 " in sock.recv(65536)


def test_health_answers_while_a_large_prompt_is_tokenized(serve):
    server, client = serve(max_body_bytes=4 << 20)
    prompt = "tokenize this sentence please. " * 60000  # ~1.8 MB of text: far over the context, after tokenizing
    failure: list = []

    def big():
        try:
            client.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": prompt}])
        except openai.BadRequestError as e:
            failure.append(e)

    thread = threading.Thread(target=big)
    thread.start()
    slowest = 0.0
    while thread.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{server.base}/health", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    thread.join()
    assert failure and "context length" in str(failure[0])
    assert slowest < 1.0  # liveness: the event loop never waited for the tokenizer
