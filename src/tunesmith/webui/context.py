"""What the Web UI process keeps between events: the workspace, the running CLI jobs, the chat model."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.webui.chat_model import ChatModel
from tunesmith.webui.jobs import CliJob
from tunesmith.webui.workspace import Workspace

TRAIN, EVAL, EXPORT = "train", "eval", "export"


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


class BusyError(Exception):
    """A job of this kind is already running (the tabs run one of each at a time)."""


@dataclass
class Context:
    root: Path  # the workspace folder; made absolute, as every path the page shows is
    chat: ChatModel = field(default_factory=ChatModel)
    jobs: dict[str, CliJob] = field(default_factory=dict)
    train_dir: Path | None = None  # output_dir of the latest training job
    _tokenizers: dict[str, object] = field(default_factory=dict)
    _starting: threading.Lock = field(default_factory=threading.Lock)  # two pages may press Start at once

    def __post_init__(self):
        self.workspace = Workspace(self.root)
        self.root = self.workspace.root

    @property
    def configs_dir(self) -> Path:
        return self.workspace.configs_dir

    @property
    def uploads_dir(self) -> Path:
        return self.workspace.uploads_dir

    @property
    def eval_dir(self) -> Path:
        return self.workspace.eval_dir

    @property
    def export_dir(self) -> Path:
        return self.workspace.export_dir

    def job(self, kind: str) -> CliJob | None:
        return self.jobs.get(kind)

    def start(self, kind: str, args: list[str]) -> CliJob:
        with self._starting:
            current = self.jobs.get(kind)
            if current is not None and current.running:
                raise BusyError(kind)
            job = CliJob(args, self.workspace.logs_dir / f"{kind}-{stamp()}.log")
            self.jobs[kind] = job
            return job

    def running_dirs(self) -> set[Path]:
        job = self.jobs.get(TRAIN)
        return {self.train_dir} if job is not None and job.running and self.train_dir else set()

    def tokenizer(self, model: str | None):
        """The tokenizer training would use for `model` (cached: previews call this on every click)."""
        from tunesmith.model.loader import load_tokenizer, resolve_model

        source = resolve_model(model)
        if source not in self._tokenizers:
            self._tokenizers[source] = load_tokenizer(source)
        return self._tokenizers[source]

    def stop_all(self) -> None:
        for job in self.jobs.values():
            job.stop()
