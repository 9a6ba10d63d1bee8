"""Counters for /metrics (Prometheus text format) and /health. Updated from the event loop and the batching thread,
so every change takes one lock. No model names appear: /metrics needs no key, and names are the key holder's."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

RATE_WINDOW_S = 10.0  # tokens/s is measured over this many recent seconds


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.queue_depth = 0  # choices waiting to start (a request with n=2 counts 2)
        self.running_rows = 0  # choices being decoded
        self.generated = 0
        self.responses: dict[int, int] = {}
        self.stream_errors = 0  # failures after a stream's 200 header went out
        self.cancelled_by: dict[str, int] = {"disconnect": 0, "timeout": 0, "handler": 0}
        self.recent: deque[tuple[float, int]] = deque()  # (time, tokens) per decoding step
        self.seconds_per_request = 2.0  # running mean, for Retry-After

    def queued(self, delta: int) -> None:
        with self.lock:
            self.queue_depth += delta

    def running(self, delta: int) -> None:
        with self.lock:
            self.running_rows += delta

    def tokens(self, count: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.generated += count
            self.recent.append((now, count))
            while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
                self.recent.popleft()

    def response(self, status: int) -> None:
        with self.lock:
            self.responses[status] = self.responses.get(status, 0) + 1

    def stream_error(self) -> None:
        with self.lock:
            self.stream_errors += 1

    def cancelled(self, reason: str, count: int) -> None:
        with self.lock:
            self.cancelled_by[reason] = self.cancelled_by.get(reason, 0) + count

    def request_took(self, seconds: float) -> None:
        with self.lock:
            self.seconds_per_request = 0.9 * self.seconds_per_request + 0.1 * seconds

    def retry_after(self, queued: int, max_batch: int) -> int:
        """Seconds until the queue has likely moved by one batch: a hint, between 1 and 60."""
        with self.lock:
            estimate = self.seconds_per_request * max(1, queued) / max(1, max_batch)
        return int(min(60, max(1, math.ceil(estimate))))

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self.lock:
            total = sum(count for t, count in self.recent if t >= now - RATE_WINDOW_S)
        return total / min(RATE_WINDOW_S, max(1e-9, now - self.started))

    def prometheus(self) -> str:
        rate = self.tokens_per_second()
        with self.lock:
            lines = [
                "# HELP tunesmith_queue_depth Choices waiting to start decoding.",
                "# TYPE tunesmith_queue_depth gauge",
                f"tunesmith_queue_depth {self.queue_depth}",
                "# HELP tunesmith_running_requests Choices being decoded now.",
                "# TYPE tunesmith_running_requests gauge",
                f"tunesmith_running_requests {self.running_rows}",
                f"# HELP tunesmith_tokens_per_second Generated tokens per second over the last {RATE_WINDOW_S:g} s.",
                "# TYPE tunesmith_tokens_per_second gauge",
                f"tunesmith_tokens_per_second {rate:.3f}",
                "# HELP tunesmith_generated_tokens_total Completion tokens generated.",
                "# TYPE tunesmith_generated_tokens_total counter",
                f"tunesmith_generated_tokens_total {self.generated}",
                "# HELP tunesmith_responses_total HTTP responses by status code.",
                "# TYPE tunesmith_responses_total counter",
                *(f'tunesmith_responses_total{{code="{code}"}} {n}' for code, n in sorted(self.responses.items())),
                ("# HELP tunesmith_errors_total Error responses by status code; code=\"stream\" counts failures "
                 "inside a stream that had already started with 200."),
                "# TYPE tunesmith_errors_total counter",
                *(f'tunesmith_errors_total{{code="{code}"}} {n}' for code, n in sorted(self.responses.items())
                  if code >= 400),
                f'tunesmith_errors_total{{code="stream"}} {self.stream_errors}',
                "# HELP tunesmith_cancelled_requests_total Choices stopped before they finished, by reason.",
                "# TYPE tunesmith_cancelled_requests_total counter",
                *(f'tunesmith_cancelled_requests_total{{reason="{why}"}} {n}'
                  for why, n in sorted(self.cancelled_by.items())),
            ]
        return "\n".join(lines) + "\n"

    def health(self) -> dict:
        with self.lock:
            return {"status": "ok", "queue_depth": self.queue_depth, "running_requests": self.running_rows,
                    "uptime_s": round(time.monotonic() - self.started)}
