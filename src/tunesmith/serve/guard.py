"""The outermost layer of the HTTP app (plain ASGI, so it sees every byte and every disconnect): API keys, the
body size limit (413) and body read timeout (408), counting /v1 responses by status for /metrics, and turning any
unexpected exception into an OpenAI-style 500 of type `server_error` instead of a plain-text page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time

from tunesmith.serve.errors import error_body
from tunesmith.serve.metrics import Metrics

log = logging.getLogger(__name__)
DRAIN_FACTOR = 16


class Guard:
    def __init__(self, app, keys: list[str], metrics: Metrics, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.keys = [f"Bearer {k}".encode() for k in keys]
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.body_timeout = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False
        api = scope["path"].startswith("/v1")  # /health and /metrics polls are not traffic worth counting

        async def counted(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if api:
                    self.metrics.response(message["status"])
            await send(message)

        if api and self.keys and not self._authorized(scope):
            return await reply(counted, 401, "Incorrect API key provided: send 'Authorization: Bearer KEY'.",
                               "invalid_api_key")
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_body(scope, receive, counted)
            if body is None:
                return
            receive = replay(body, receive)
        try:
            await self.app(scope, receive, counted)
        except Exception as e:  # noqa: BLE001 - the last line of defence: one JSON error, never a traceback page
            log.error("request failed: %s: %s", type(e).__name__, e)
            if not started:
                await reply(counted, 500, "The server failed on this request.", "server_error")

    def _authorized(self, scope) -> bool:
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        ok = False
        for key in self.keys:  # every key compared in constant time, none skipped
            ok |= secrets.compare_digest(given, key)
        return ok

    async def _read_body(self, scope, receive, send) -> bytes | None:
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        too_large = declared is not None and (not declared.isdigit() or int(declared) > self.max_body)
        chunks, size, deadline = [], 0, time.monotonic() + self.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await reply(send, 408, f"The request body did not arrive within {self.body_timeout:g} s.",
                            "request_timeout")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            too_large = too_large or size > self.max_body
            # An oversized body is read on (and dropped) up to a bound, so the client, still sending, can read the
            # 413 instead of seeing its connection reset; past the bound the connection is simply closed.
            if too_large and (not more or size > DRAIN_FACTOR * self.max_body):
                await reply(send, 413, f"The request body is larger than this server accepts ({self.max_body} "
                            "bytes).", "request_too_large")
                return None
            if not too_large:
                chunks.append(chunk)
            if not more:
                return b"".join(chunks)


def replay(body: bytes, receive):
    """A `receive` that gives the app the body already read, then the real channel (where disconnects arrive)."""
    delivered = False

    async def again():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def reply(send, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(error_body(message, code, status=status)).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": payload})
