"""Long work runs as the real CLI in a subprocess: `python -m tunesmith train|eval|export ...`.

The Web UI never trains, evaluates or exports in its own process; it starts the command a user could type, keeps
its output in a log file, and reads back the one-line `error: ...` the CLI prints for a mistake.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_GRACE_S = 5.0  # how long a job may take to exit after each stop signal
PAGE_SECRETS = ("TUNESMITH_WEBUI_AUTH",)


class CliJob:
    def __init__(self, args: list[str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self.started = time.time()
        self.stopped = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # The page's login is the page's: the commands it runs never need it in their environment.
        env = {k: v for k, v in os.environ.items() if k not in PAGE_SECRETS} | {"PYTHONUNBUFFERED": "1"}
        with log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "tunesmith", *args], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    @property
    def command(self) -> str:
        return shlex.join(["tunesmith", *self.args])

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0

    def stop(self) -> None:
        """Ctrl-C first (the CLI exits cleanly, as in a terminal), then SIGTERM, then kill. The later steps matter
        when the page was started from a shell that ignores Ctrl-C in background jobs: children inherit that."""
        if not self.running:
            return
        self.stopped = True
        for send in (lambda: self.process.send_signal(signal.SIGINT), self.process.terminate, self.process.kill):
            send()
            try:
                self.process.wait(STOP_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                continue

    def output(self) -> str:
        try:  # newline="": keep tqdm's carriage returns, so lines() can keep only a bar's last state
            with self.log_path.open(encoding="utf-8", errors="replace", newline="") as log:
                return log.read()
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        """Non-empty output lines; tqdm redraws a line with carriage returns, so only its last state is kept."""
        cleaned = (line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in self.output().split("\n"))
        return [line for line in cleaned if line.strip()]

    def tail(self, count: int = 12) -> str:
        return "\n".join(self.lines()[-count:])

    def error_line(self) -> str | None:
        """Why a finished job failed, in one line: the CLI's `error: ...`, else the last line it printed (the
        exception of a crash), else its exit code."""
        if self.running or self.returncode == 0:
            return None
        lines = [line.strip() for line in self.lines()]
        for line in reversed(lines):
            if line.startswith("error: "):
                return line.removeprefix("error: ")
        if lines:
            return lines[-1]
        return f"exit code {self.returncode}"
