"""A real `tunesmith serve` on a free port, driven with the official `openai` client (and raw HTTP for bad bodies)."""

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import ROOT, run_cli

KEY = "test-key"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", *args, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise AssertionError("server did not start")


@pytest.fixture(scope="module")
def server(embedded_dir):
    proc, base = start("--api-key", KEY)  # no model argument: the embedded default
    yield base
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server}/v1", api_key=KEY, timeout=120, max_retries=0)


def test_models_and_chat(client):
    [model] = client.models.list().data
    assert model.id == "SmolLM2-135M-Instruct"
    r = client.chat.completions.create(model=model.id, messages=QUESTION, temperature=0, max_tokens=16)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_matches_non_streaming(client):
    kwargs = dict(model="SmolLM2-135M-Instruct", messages=QUESTION, temperature=0, max_tokens=16)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_completions_stop_and_seed(client):
    r = client.completions.create(model="SmolLM2-135M-Instruct", prompt="1, 2, 3, 4,", max_tokens=12, temperature=0,
                                  stop=[" 7"])
    assert r.choices[0].finish_reason == "stop" and " 7" not in r.choices[0].text
    a, b = (client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION, temperature=1.0,
                                           max_tokens=10, seed=123).choices[0].message.content for _ in range(2))
    assert a == b


def test_client_errors_are_4xx_json(client, server):
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.chat.completions.create(model="SmolLM2-135M-Instruct", max_tokens=4,
                                       messages=[{"role": "user", "content": "word " * 9000}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION, temperature=7)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body in ("{not json", "[1, 2]", '{"model": "SmolLM2-135M-Instruct", "messages": "hi"}'):
        r = httpx.post(f"{server}/v1/chat/completions", content=body, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_concurrent_requests_all_succeed(client):
    def ask(i):
        return client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION, max_tokens=8,
                                              temperature=0.7, seed=i, stream=bool(i % 2))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(8)))
    assert len(results) == 8


def test_greedy_chat_equals_server(client):
    r = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION, temperature=0,
                                       max_tokens=20)
    chat = run_cli("chat", "--prompt", QUESTION[0]["content"], "--temperature", "0", "--max-new-tokens", "20")
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stdout.rstrip("\n") == r.choices[0].message.content


def test_several_adapters_on_one_base(tiny_model_dir, alpaca_file, tmp_path):
    from tunesmith.config import load_config
    from tunesmith.train.loop import train

    runs = []
    for name, lr in (("bot-a", "1e-2"), ("bot-b", "5e-2")):
        out = tmp_path / name
        train(load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}",
                                 "max_steps=3", f"learning_rate={lr}"]), show_progress=False)
        runs.append(str(out))
    proc, base = start(*runs)
    try:
        c = OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        assert sorted(m.id for m in c.models.list().data) == ["bot-a", "bot-b"]
        for name in ("bot-a", "bot-b"):
            r = c.chat.completions.create(model=name, messages=QUESTION, temperature=0, max_tokens=4)
            assert r.model == name and r.usage.completion_tokens >= 1
    finally:
        proc.terminate()
        proc.wait(30)


def test_vllm_engine_refuses_cleanly_without_gpu():
    result = run_cli("serve", "--engine", "vllm", "--port", str(free_port()))
    assert result.returncode == 2 and "vLLM" in result.stderr and "Traceback" not in result.stderr
