"""A real `tunesmith serve` on a free port, driven with the official `openai` client (and raw HTTP for bad bodies)."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import run_cli
from tests.serve.conftest import KEY, free_port, start, stop

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(embedded_dir):
    proc, base = start(env={"TUNESMITH_API_KEY": KEY})  # no model argument: the embedded default
    yield base
    stop(proc)


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
    kwargs = {"model": "SmolLM2-135M-Instruct", "messages": QUESTION, "temperature": 0, "max_tokens": 16}
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


def test_responses_api_and_model_lookup(client, server):
    """The client's main entry point, `client.responses`, answers as chat does; its stream helper (the SDK's own
    strict accumulator) completes; a model can be looked up by name; a wrong path names the right ones."""
    model = client.models.retrieve("SmolLM2-135M-Instruct").id
    r = client.responses.create(model=model, input=QUESTION[0]["content"], temperature=0, max_output_tokens=16)
    chat = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=16)
    assert "Paris" in r.output_text and r.output_text == chat.choices[0].message.content
    with client.responses.stream(model=model, input=QUESTION, temperature=0, max_output_tokens=200) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == r.output_text
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError, match="/v1/responses"):
        client.embeddings.create(model=model, input="hi")
    with pytest.raises(openai.NotFoundError, match="stores none"):
        client.responses.retrieve(r.id)


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
        stop(proc)


def test_vllm_engine_refuses_cleanly_and_is_not_advertised():
    result = run_cli("serve", "--engine", "vllm", "--port", str(free_port()))
    assert result.returncode == 2 and "vLLM" in result.stderr and "CUDA" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    help_text = run_cli("serve", "--help").stdout
    assert "llamacpp" in help_text and "vllm" not in help_text.lower() and "--api-key-file" in help_text
    assert "--api-key " not in help_text  # a key on the command line shows in `ps`: not advertised


def test_keys_from_env_and_file_and_the_bind_rule(tiny_model_dir, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nkey-one\n\nkey-two\n")
    proc, base = start(str(tiny_model_dir), "--api-key-file", str(keys), env={"TUNESMITH_API_KEY": "key-env"})
    try:
        for key in ("key-one", "key-two", "key-env"):
            assert OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0).models.list().data
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=f"{base}/v1", api_key="# team keys", max_retries=0).models.list()
        assert httpx.get(f"{base}/health").status_code == 200  # health and metrics need no key
        assert "tunesmith_responses_total" in httpx.get(f"{base}/metrics").text
    finally:
        stop(proc)
    env_without_key = {"TUNESMITH_API_KEY": ""}
    refused = run_cli("serve", str(tiny_model_dir), "--host", "0.0.0.0", "--port", str(free_port()),
                      env=env_without_key)
    assert refused.returncode == 2 and "--insecure" in refused.stderr and "Traceback" not in refused.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    result = run_cli("serve", "--api-key-file", str(empty), env=env_without_key)
    assert result.returncode == 2 and "no key" in result.stderr


def test_busy_port_is_one_line_and_sigterm_ends_the_server_cleanly(tiny_model_dir):
    """The decoding loop runs on the main thread and uvicorn in another (tunesmith/webserver.py): a busy port still
    fails in one line before any model loads, and SIGTERM (a service manager's stop) exits 0 and closes the port."""
    proc, base = start(str(tiny_model_dir), "--dtype", "fp32")
    port = base.rsplit(":", 1)[1]
    try:
        busy = run_cli("serve", str(tiny_model_dir), "--port", port)
        assert busy.returncode != 0 and "Traceback" not in busy.stderr
        assert busy.stderr.strip().splitlines() == [f"error: serve: cannot listen on 127.0.0.1:{port} (in use?); "
                                                    "pick another with --port"]
        client = OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        assert client.completions.create(model=model, prompt="Hi", max_tokens=3).usage.completion_tokens > 0
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)


def test_bind_rule_accepts_loopback_only():
    from tunesmith.errors import ConfigError
    from tunesmith.serve.server import check_bind

    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"):
        check_bind(host, [], insecure=False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        with pytest.raises(ConfigError, match="without an API key"):
            check_bind(host, [], insecure=False)
        check_bind(host, ["k"], insecure=False)
        check_bind(host, [], insecure=True)


def test_engine_registry_and_auto_choice(monkeypatch):
    import sys

    from tunesmith.errors import ConfigError
    from tunesmith.infer import engines, llamacpp

    assert engines.listed() == ["transformers", "llamacpp"] and "vllm" in engines.ENGINES
    gguf_engine = "llamacpp" if llamacpp.installed() else "transformers"
    assert engines.pick("auto", ["model.Q8_0.gguf"]) == gguf_engine
    assert engines.pick("auto", []) == "transformers"  # the embedded model: same answers as `tunesmith chat`
    assert engines.pick("auto", ["runs/quickstart", "model.gguf"]) == "transformers"
    with pytest.raises(ConfigError, match="unknown engine"):
        engines.pick("tensorrt", [])
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    assert engines.pick("auto", ["model.gguf"]) == "transformers"
    with pytest.raises(ConfigError, match=r"pip install 'tunesmith\[llamacpp\]'"):
        engines.load("llamacpp", ["model.gguf"], [])
