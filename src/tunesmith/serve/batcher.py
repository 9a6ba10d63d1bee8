"""Continuous batching over every served model, fair between them, with cancellation and a bounded queue.

One thread owns the model(s) and loops (`run`; under `tunesmith serve` the main thread, see webserver.py): admit
waiting jobs into their model's batch (up to `max_batch` rows per model), then advance every model's running batch
by one token, taking turns. So requests for two models (or two adapters on one base) both progress under load, each
at its share of the machine, instead of one waiting for the other's batch to drain. A job is one client request;
its `n` choices are rows of the batch.

A cancelled job (its client disconnected, timed out, or its handler failed) leaves the queue at once, or the batch
at the next step: the engine drops rows whose request is marked cancelled before it computes anything for them.
The asyncio side hears from this thread through `loop.call_soon_threadsafe` only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from tunesmith.infer.engine import Request
from tunesmith.serve.metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__("the queue is full")
        self.retry_after = retry_after


@dataclass
class Job:
    model: str
    requests: list[Request]  # one per choice (n)
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future
    events: asyncio.Queue | None = None  # streaming: (choice, text, logprobs count) as text is decided; then None
    cancelled: str | None = None  # why: "disconnect", "timeout", "handler"
    pending: int = field(init=False)

    def __post_init__(self):
        self.pending = len(self.requests)

    @property
    def error(self) -> BaseException | None:
        return next((r.error for r in self.requests if r.error is not None), None)


class Batcher:
    def __init__(self, models: dict, max_batch: int = 16, max_queue: int = 256, metrics: Metrics | None = None,
                 own_thread: bool = True):
        self.models = models
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.waiting: dict[str, deque[Job]] = {name: deque() for name in models}
        self.batches: dict[str, object] = {}  # model name -> its running engine Batch
        self.rows: dict[int, Job] = {}  # id(request) -> its job, for every admitted request
        self.turn = 0  # which model is first in line next time (round robin)
        self.wakeup = threading.Condition()
        if own_thread:  # otherwise the caller runs `run` on a thread of its choosing
            threading.Thread(target=self.run, name="tunesmith-batcher", daemon=True).start()

    # ---- the asyncio side -------------------------------------------------------------------------------------

    def submit(self, model: str, requests: list[Request], stream: bool) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(model, requests, loop, loop.create_future(), asyncio.Queue() if stream else None)
        if stream:
            for index, r in enumerate(requests):
                # (choice, new text, how many log-probabilities cover the text so far), read on the worker thread
                r.on_text = lambda text, i=index, r=r: loop.call_soon_threadsafe(
                    job.events.put_nowait, (i, text, len(r.logprobs)))
        with self.wakeup:
            queued = self._queued()
            if queued and queued + len(requests) > self.max_queue:  # (alone in the queue, any n may wait)
                raise QueueFull(self.metrics.retry_after(queued, self.max_batch))
            self.waiting[model].append(job)
            self.metrics.queued(len(requests))
            self.wakeup.notify()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        """Stop a job that is not finished: out of the queue now, out of the batch before its next step."""
        if job.done.done() or job.cancelled:
            return
        job.cancelled = reason
        with self.wakeup:
            if job in self.waiting[job.model]:
                self.waiting[job.model].remove(job)
                self.metrics.queued(-len(job.requests))
                for r in job.requests:
                    r.cancelled, r.finish_reason = True, "cancelled"
                self.metrics.cancelled(reason, len(job.requests))
                self._settle(job)
                return
            for r in job.requests:
                r.cancelled = True  # the engine reads this before each step

    # ---- the worker thread ------------------------------------------------------------------------------------

    def run(self, until=lambda: False) -> None:
        """Decode until `until()` is true (checked at least twice a second while idle)."""
        while not until():
            with self.wakeup:
                if not self.batches and not any(self.waiting.values()):
                    self.wakeup.wait(0.5)
                    continue
                admitted = self._admit()
            for name, jobs in admitted.items():
                self._join(name, jobs)
            for name in list(self.batches):
                self._step(name)

    def _admit(self) -> dict[str, list[Job]]:
        """Waiting jobs to start now (called with the lock held). Each model has its own batch of up to `max_batch`
        rows, so a flood for one model never holds the others' requests in the queue."""
        names = list(self.models)
        names = names[self.turn % len(names):] + names[:self.turn % len(names)]
        self.turn += 1
        taken: dict[str, list[Job]] = {}
        for name in names:
            queue, batch = self.waiting[name], self.batches.get(name)
            if not queue or (batch is not None and not self.models[name].engine.can_join(batch)):
                continue
            running = len(batch.requests) if batch is not None else 0
            while queue and (not running or running + len(queue[0].requests) <= self.max_batch):
                job = queue.popleft()
                self.metrics.queued(-len(job.requests))
                taken.setdefault(name, []).append(job)
                running += len(job.requests)
        return taken

    def _join(self, name: str, jobs: list[Job]) -> None:
        loaded = self.models[name]
        requests = [r for job in jobs for r in job.requests]
        for job in jobs:
            for r in job.requests:
                self.rows[id(r)] = job
        self.metrics.running(len(requests))
        try:
            loaded.activate()
            batch = loaded.engine.join(self.batches.get(name), requests)
        except Exception as e:
            log.exception("could not start requests")
            for r in requests:
                if r.finish_reason is None:
                    r.fail(e)
            self._finished(requests)
            return
        self._finished([r for r in requests if r.finish_reason is not None])  # failed at the start
        if batch.requests:
            self.batches[name] = batch
        else:
            self.batches.pop(name, None)

    def _step(self, name: str) -> None:
        loaded, batch = self.models[name], self.batches[name]
        rows = list(batch.requests)
        before = sum(len(r.completion_ids) for r in rows)
        try:
            loaded.activate()
            finished = loaded.engine.step(batch)
        except Exception as e:
            log.exception("decoding step failed")
            for r in batch.requests:
                r.fail(e)
            finished, batch.requests = list(batch.requests), []
        self.metrics.tokens(sum(len(r.completion_ids) for r in rows) - before)
        self._finished(finished)
        if not batch.requests:
            del self.batches[name]

    def _finished(self, requests: list[Request]) -> None:
        for r in requests:
            job = self.rows.pop(id(r), None)
            if job is None:
                continue
            self.metrics.running(-1)
            if r.finish_reason == "cancelled":
                self.metrics.cancelled(job.cancelled or "disconnect", 1)
            job.pending -= 1
            if job.pending == 0:
                job.loop.call_soon_threadsafe(self._settle, job)

    @staticmethod
    def _settle(job: Job) -> None:
        """On the event loop: wake whoever waits for this job."""
        if job.events is not None:
            job.events.put_nowait(None)
        if not job.done.done():
            job.done.set_result(job)

    def _queued(self) -> int:
        """Choices waiting to start (called with the lock held)."""
        return sum(len(waiting.requests) for queue in self.waiting.values() for waiting in queue)
