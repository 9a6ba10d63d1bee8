"""Continuous batching: requests that arrive together are decoded together, and new ones join a running batch.

One worker thread owns the model(s) and loops: take the requests waiting for the model being decoded (up to
`max_batch` in flight), prefill them and merge them into the running batch, then decode one token for every request
in it; a finished request leaves at once and its client is answered. Requests for another served model wait until
the running batch drains. The asyncio side gets text through thread-safe callbacks only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from tunesmith.infer.engine import Request
from tunesmith.infer.loading import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class Job:
    model: str
    request: Request
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future
    chunks: asyncio.Queue | None = None  # streaming: text pieces, then None
    error: BaseException | None = field(default=None)


class Batcher:
    def __init__(self, models: dict[str, LoadedModel], max_batch: int = 16):
        self.models = models
        self.max_batch = max_batch
        self.waiting: deque[Job] = deque()
        self.wakeup = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="tunesmith-batcher", daemon=True)
        self.thread.start()

    async def submit(self, model: str, request: Request, stream: bool) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(model, request, loop, loop.create_future(), asyncio.Queue() if stream else None)
        if stream:
            request.on_text = lambda text: loop.call_soon_threadsafe(job.chunks.put_nowait, text)
        with self.wakeup:
            self.waiting.append(job)
            self.wakeup.notify()
        return job

    def _take(self, model: str | None, room: int, block: bool) -> list[Job]:
        """Waiting jobs for `model` (or, when nothing runs, for the oldest job's model), at most `room`."""
        with self.wakeup:
            while block and not self.waiting:
                self.wakeup.wait()
            if not self.waiting or room <= 0:
                return []
            model = model or self.waiting[0].model
            taken = [job for job in self.waiting if job.model == model][:room]
            for job in taken:
                self.waiting.remove(job)
            return taken

    def _run(self) -> None:
        batch, model, jobs = None, None, {}
        while True:
            running = bool(batch and batch.requests)
            loaded = self.models[model] if running else None
            can_join = not running or loaded.engine.can_join(batch)
            new = self._take(model if running else None, self.max_batch - len(jobs) if can_join else 0,
                             block=not running)
            try:
                if new:
                    model = new[0].model
                    loaded = self.models[model]
                    loaded.activate()
                    jobs.update({id(job.request): job for job in new})
                    batch = loaded.engine.join(batch if running else None, [job.request for job in new])
                for request in loaded.engine.step(batch):
                    self._done(jobs.pop(id(request)), None)
            except Exception as e:  # tell the waiting clients instead of killing the worker
                log.exception("generation failed")
                for job in jobs.values():
                    self._done(job, e)
                batch, jobs = None, {}

    def _done(self, job: Job, error: BaseException | None) -> None:
        job.loop.call_soon_threadsafe(self._finish, job, error)

    @staticmethod
    def _finish(job: Job, error: BaseException | None) -> None:
        job.error = error
        if job.chunks is not None:
            job.chunks.put_nowait(None)
        if not job.done.done():
            job.done.set_result(job.request)
