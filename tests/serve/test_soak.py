"""Soak: a real `tunesmith serve` (the tiny model) under 32 concurrent streaming clients of the official `openai`
client, mixed with clients that hang up mid-stream, malformed and oversized bodies, and wrong keys. It must end with
no 5xx, no hang, every abandoned request cancelled (counted in /metrics), and the server still answering."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
from openai import OpenAI

from tests.serve.conftest import KEY, metric, start, stop, wait_for

STREAMERS, ROUNDS, DROPPERS = 32, 3, 8


def test_soak(tiny_model_dir):
    # One torch thread: the tiny model's operations are too small to share, and a second thread only spins while
    # waiting for a core that the clients of this test (or other processes) are using.
    proc, base = start(str(tiny_model_dir), "--name", "tiny", "--max-batch", "16", "--max-body-mb", "1",
                       env={"TUNESMITH_API_KEY": KEY, "OMP_NUM_THREADS": "1"})
    try:
        client = OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=60)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        statuses: list[int] = []

        def streamer(i: int) -> int:
            tokens = 0
            for k in range(ROUNDS):
                chunks = list(client.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": f"Question {i}.{k}?"}], max_tokens=16,
                    temperature=0.8, seed=i * 10 + k, stream=True, stream_options={"include_usage": True}))
                assert chunks[-1].usage.completion_tokens >= 1
                assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
                tokens += chunks[-1].usage.completion_tokens
            return tokens

        def dropper(i: int) -> None:
            """Asks for 400 greedy tokens (the tiny model never stops early on this prompt), reads one event,
            hangs up."""
            body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 400,
                               "temperature": 0, "stream": True}).encode()
            host, port = base.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " +
                             str(len(body)).encode() + b"\r\n\r\n" + body)
                assert b"200 OK" in sock.recv(65536)

        def abuser(i: int) -> None:
            url = f"{base}/v1/chat/completions"
            bad = ["{not json", "[1]", '{"model": ["x"], "messages": []}', '{"messages": "hi"}',
                   '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "seed": 9223372036854775808}',
                   '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream_options": [1]}',
                   '{"a": ' + "[" * 5000 + "]" * 5000 + "}"]
            for body in bad:
                statuses.append(httpx.post(url, content=body, headers=headers, timeout=30).status_code)
            statuses.append(httpx.post(url, content=b"x" * (2 << 20), headers=headers, timeout=30).status_code)
            statuses.append(httpx.post(url, json={"model": "tiny", "messages": []},
                                       headers={"Authorization": "Bearer wrong"}, timeout=30).status_code)
            try:
                OpenAI(base_url=f"{base}/v1", api_key=f"wrong-{i}", max_retries=0).models.list()
            except openai.AuthenticationError as e:
                statuses.append(e.status_code)

        started = time.monotonic()
        with ThreadPoolExecutor(STREAMERS + DROPPERS + 4) as pool:
            streams = [pool.submit(streamer, i) for i in range(STREAMERS)]
            drops = [pool.submit(dropper, i) for i in range(DROPPERS)]
            abuse = [pool.submit(abuser, i) for i in range(4)]
            tokens = sum(f.result(timeout=120) for f in streams)  # a hang fails here
            for f in drops + abuse:
                f.result(timeout=120)
        elapsed = time.monotonic() - started
        print(f"soak: {elapsed:.1f} s, {tokens} tokens streamed")

        assert tokens >= STREAMERS * ROUNDS
        assert statuses and all(400 <= s < 500 for s in statuses), statuses
        assert {400, 401, 413} <= set(statuses)
        assert wait_for(lambda: metric(base, "tunesmith_running_requests") == 0)
        assert metric(base, "tunesmith_cancelled_requests_total", reason="disconnect") == DROPPERS
        assert metric(base, "tunesmith_queue_depth") == 0
        text = httpx.get(f"{base}/metrics").text
        assert not [line for line in text.splitlines() if line.startswith('tunesmith_responses_total{code="5')]
        assert metric(base, "tunesmith_errors_total", code="stream") == 0
        after = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Still there?"}],
                                               max_tokens=4)
        assert after.usage.completion_tokens >= 1
    finally:
        stop(proc)
