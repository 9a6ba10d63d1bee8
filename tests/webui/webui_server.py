"""`tunesmith webui` in a subprocess, for the browser and HTTP tests: on a free port, ready once it has printed its
address. The login line it prints is read back, so a test logs in with the password the user would see."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

START_TIMEOUT_S = 120  # importing gradio and torch on a busy 2-core box
LOGIN = re.compile(r"log in as user '([^']+)' with password '([^']+)'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningWebUI:
    url: str  # where the tests reach it, ending in /
    workspace: Path
    log: Path
    process: subprocess.Popen

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    @property
    def login(self) -> tuple[str, str]:
        """(user, password) from the start-up line."""
        found = LOGIN.search(self.output())
        assert found, f"no login line in the output:\n{self.output()}"
        return found.group(1), found.group(2)


@contextmanager
def running_webui(folder: Path, host: str = "127.0.0.1", env: dict[str, str] | None = None,
                  connect_to: str | None = None) -> Iterator[RunningWebUI]:
    """The UI bound to `host`, its workspace `folder/ws`; reached at `connect_to` (default: the bound host)."""
    port, workspace, log_path = free_port(), folder / "ws", folder / "webui.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUNESMITH_WEBUI_AUTH")}
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "tunesmith", "webui", "--host", host, "--port", str(port),
                                    "--workspace", str(workspace)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**clean, "PYTHONUNBUFFERED": "1", **(env or {})})
    ui = RunningWebUI(f"http://{connect_to or host}:{port}/", workspace, log_path, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "tunesmith web UI on" not in ui.output():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tunesmith webui did not start:\n{ui.output()}")
            time.sleep(0.2)
        yield ui
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
