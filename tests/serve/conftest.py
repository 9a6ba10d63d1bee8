"""Servers for the serve tests: a real `tunesmith serve` subprocess, or the app in this process (uvicorn in a thread)
where a test needs to reach inside: slow the engine down, inject a fault into one request's sampling."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.export.conftest import small_model_dir, small_run  # noqa: F401 - fixtures for the GGUF tests

KEY = "test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`tunesmith serve ARGS` on a free port; returns the process and its base URL once /health answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", *args, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    for _ in range(480):
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


class InProcess:
    """The app on uvicorn in a thread of this process."""

    def __init__(self, models: dict, keys=None, **limits):
        import uvicorn

        from tunesmith.serve.app import Limits, create_app

        self.app = create_app(models, keys, Limits(**limits))
        self.metrics = self.app.app.state.metrics
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("in-process server did not start")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def metric(base: str, name: str, **labels) -> float:
    """One value from /metrics (0 if absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def wait_for(condition, timeout: float = 20.0, every: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return condition()


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dir):
    """Two served copies of the tiny model ("tiny-a", "tiny-b"), loaded once for the in-process tests."""
    from tunesmith.infer.loading import load_for_inference

    return {name: load_for_inference(str(tiny_model_dir), name=name) for name in ("tiny-a", "tiny-b")}


@pytest.fixture
def slow_steps(tiny_models, monkeypatch):
    """Every decoding step of the tiny models takes at least `delay` seconds (set .delay), so that a request is
    still running when a test acts on it, on any machine."""

    class Slow:
        delay = 0.02

    slow = Slow()
    for loaded in tiny_models.values():
        engine = loaded.engine
        real_step = engine.step

        def step(batch, real_step=real_step):
            time.sleep(slow.delay)
            return real_step(batch)

        monkeypatch.setattr(engine, "step", step)
    return slow
