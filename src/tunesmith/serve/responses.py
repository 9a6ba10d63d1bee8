"""OpenAI-shaped answers: the whole completion as one JSON body, or server-sent events ending with `data: [DONE]`
(the Responses API's own shapes are in responses_api.py).

`EventStream` is a plain ASGI response so that it can watch the connection while it waits for tokens: if the client
disconnects, the per-request timeout passes, or anything here fails, the job is cancelled (its rows leave the batch
at the next step) instead of decoding on for nobody.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.responses import Response

from tunesmith.infer.engine import Request
from tunesmith.serve.errors import error_body


class Answer:
    """What every response needs to know about one job."""

    def __init__(self, kind: str, rid: str, model: str, tokenizer, job):
        self.kind, self.rid, self.model, self.tokenizer, self.job = kind, rid, model, tokenizer, job
        self.created = int(time.time())
        self.object = ("chat.completion" if kind == "chat" else "text_completion")

    def usage(self) -> dict:
        requests = self.job.requests
        prompt = len(requests[0].prompt_ids)
        completion = sum(len(r.completion_ids) for r in requests)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def body(self) -> dict:
        choices = []
        for i, r in enumerate(self.job.requests):
            logprobs = self.logprobs(r, 0, len(r.logprobs), 0) if r.params.logprobs is not None else None
            if self.kind == "chat":
                choices.append({"index": i, "message": {"role": "assistant", "content": r.text},
                                "finish_reason": r.finish_reason, "logprobs": logprobs})
            else:
                choices.append({"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": logprobs})
        return {"id": self.rid, "object": self.object, "created": self.created, "model": self.model,
                "choices": choices, "usage": self.usage()}

    def token(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def logprobs(self, r: Request, start: int, end: int, offset: int) -> dict:
        entries = r.logprobs[start:end]
        if self.kind == "chat":
            def one(token: int, logprob: float) -> dict:
                text = self.token(token)
                return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

            return {"content": [{**one(e.token, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]}
                                for e in entries], "refusal": None}
        tokens = [self.token(e.token) for e in entries]
        offsets = []
        for text in tokens:
            offsets.append(offset)
            offset += len(text)
        return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries],
                "top_logprobs": [{self.token(t): lp for t, lp in e.top} for e in entries]
                if r.params.logprobs else None, "text_offset": offsets}


def sse(data: dict | str, event: str | None = None) -> str:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


class ChunkEvents:
    """How /v1/chat/completions and /v1/completions stream: one chunk per piece of text, `data: [DONE]` last."""

    def __init__(self, answer: Answer, include_usage: bool):
        self.answer, self.include_usage = answer, include_usage
        self.sent_logprobs = [0] * len(answer.job.requests)
        self.offsets = [0] * len(answer.job.requests)
        self.object = "chat.completion.chunk" if answer.kind == "chat" else "text_completion"

    def chunk(self, choices: list[dict], **extra) -> str:
        a = self.answer
        return sse({"id": a.rid, "object": self.object, "created": a.created, "model": a.model, "choices": choices,
                    **extra})

    def choice(self, index: int, text: str | None, finish: str | None, first: bool = False,
               covered: int | None = None) -> dict:
        answer, r = self.answer, self.answer.job.requests[index]
        logprobs = None
        if r.params.logprobs is not None and not first:
            end = len(r.logprobs) if covered is None else covered
            logprobs = answer.logprobs(r, self.sent_logprobs[index], end, self.offsets[index])
            self.sent_logprobs[index] = end
        if answer.kind == "chat":
            delta = ({"role": "assistant", "content": ""} if first else {}) | ({"content": text} if text else {})
            return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        self.offsets[index] += len(text or "")
        return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": logprobs}

    def opening(self) -> list[str]:
        if self.answer.kind != "chat":
            return []
        return [self.chunk([self.choice(i, None, None, first=True)]) for i in range(len(self.answer.job.requests))]

    def delta(self, index: int, text: str, covered: int | None) -> list[str]:
        return [self.chunk([self.choice(index, text, None, covered=covered)])]

    def closing(self) -> list[str]:
        frames = [self.chunk([self.choice(i, None, r.finish_reason)]) for i, r in enumerate(self.answer.job.requests)]
        if self.include_usage:
            frames.append(self.chunk([], usage=self.answer.usage()))
        return frames + [sse("[DONE]")]

    def failed(self, message: str, code: str, status: int) -> list[str]:
        return [sse(error_body(message, code, status=status)), sse("[DONE]")]


class EventStream(Response):
    """ASGI response streaming one job as server-sent events, shaped by `events` (`ChunkEvents` or the Responses
    API's events)."""

    def __init__(self, events, deadline: float, on_exit, metrics):
        super().__init__(status_code=200, media_type="text/event-stream")
        self.events, self.deadline = events, deadline
        self.on_exit = on_exit  # on_exit(reason): cancels the job unless it is finished
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        reason = "handler"  # anything that ends this coroutine early is this handler's failure ...
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                    (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
            outcome = await self._events(send, gone)
            reason = outcome
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we wrote to it
            reason = "disconnect"
        finally:
            gone.cancel()
            self.on_exit(reason)  # ... except a stream that ended normally, for which this does nothing

    async def _events(self, send, gone) -> str:
        """Send events until the job ends; return "done", "disconnect" or "timeout"."""
        events, job = self.events, self.events.answer.job

        async def emit(frames: list[str]) -> None:
            for frame in frames:
                await asyncio.wait_for(send({"type": "http.response.body", "body": frame.encode(), "more_body": True}),
                                       max(0.01, self.deadline - time.monotonic()))

        try:
            await emit(events.opening())
            while True:
                wait = asyncio.ensure_future(job.events.get())
                done, _ = await asyncio.wait({wait, gone}, timeout=max(0.0, self.deadline - time.monotonic()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if wait not in done:
                    wait.cancel()
                    if gone in done:
                        return "disconnect"
                    raise TimeoutError
                event = wait.result()
                if event is None:
                    break
                await emit(events.delta(*event))
            if job.error is not None or job.cancelled:
                self.metrics.stream_error()
                await emit(events.failed("Generation failed on the server.", "server_error", 500))
            else:
                await emit(events.closing())
            return "done"
        except TimeoutError:
            self.metrics.stream_error()
            try:
                await emit(events.failed("The request took longer than this server allows.", "timeout", 504))
            except (TimeoutError, OSError):
                pass
            return "timeout"


async def wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
