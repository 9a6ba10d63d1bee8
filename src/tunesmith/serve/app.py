"""The OpenAI-compatible HTTP API: GET /v1/models (and /v1/models/NAME), POST /v1/chat/completions, /v1/completions
and /v1/responses; GET /health and GET /metrics (Prometheus text) without a key.

Client mistakes get OpenAI-style error JSON with a 4xx status (400 bad body or parameter, 401 key, 404 model,
408 slow body, 413 large body, 429 full queue with Retry-After); server faults a 500 of type `server_error`.
Parsing, validation and tokenization run on worker threads, so a large body never stalls the event loop. Every
request is cancelled when its client disconnects or times out, or when its handler fails (see responses.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.infer.engine import Request
from tunesmith.serve import params as request_params
from tunesmith.serve import responses_api
from tunesmith.serve.batcher import Batcher, QueueFull
from tunesmith.serve.errors import ApiError, error_body
from tunesmith.serve.guard import Guard
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.responses import Answer, ChunkEvents, EventStream, wait_for_disconnect

MAX_JSON_DEPTH = 32  # a chat request needs 5 levels; deeper is an attack or a bug
CLIENT_GONE = 499  # nginx's status for "the client closed the request": nobody reads it, /metrics counts it
ENDPOINTS = ("GET /v1/models, POST /v1/chat/completions, POST /v1/completions and POST /v1/responses (GET /health and "
             "/metrics without a key)")


@dataclasses.dataclass
class Limits:
    max_batch: int = 16
    max_queue: int = 256  # choices waiting to start; more get 429
    request_timeout_s: float = 600.0  # from arrival to the last token, queue included
    max_body_bytes: int = 2 << 20
    body_timeout_s: float = 30.0  # the whole body must arrive within this


def create_app(models: dict, api_keys: list[str] | str | None = None, limits: Limits | None = None,
               batcher_thread: bool = True):
    """The ASGI app: `Guard` (keys, body limits, status counts) around the FastAPI routes. Without `batcher_thread`
    the caller runs `app.app.state.batcher.run()` itself."""
    limits = limits or Limits()
    keys = [api_keys] if isinstance(api_keys, str) else list(api_keys or [])
    metrics = Metrics()
    batcher = Batcher(models, limits.max_batch, limits.max_queue, metrics, own_thread=batcher_thread)
    cpu = ThreadPoolExecutor(2, thread_name_prefix="tunesmith-cpu")  # JSON, templates, tokenizers
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.metrics = batcher, metrics
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_, e: ApiError):
        return JSONResponse(error_body(e.message, e.code, e.param, e.status), status_code=e.status,
                            headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_, e: RequestValidationError):
        return JSONResponse(error_body(str(e.errors()[:1]), "invalid_request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(http: HttpRequest, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        message = str(e.detail)
        if e.status_code in (404, 405):  # a wrong path or method: say what this server does answer
            message = f"This server has no {http.method} {http.url.path}; it answers {ENDPOINTS}."
        return JSONResponse(error_body(message, code, status=e.status_code), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _crash(_, e: Exception):
        return JSONResponse(error_body("The server failed on this request.", "server_error", status=500),
                            status_code=500)

    def card(name: str) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "tunesmith"}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [card(name) for name in models]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        return card(model_of(models, name)[0])

    # decoding paths, e.g. "fast (bf16)": without model names, which only key holders may list
    paths = ", ".join(sorted({m.engine.describe() for m in models.values()}))

    @app.get("/health")
    async def health():
        return {**metrics.health(), "engines": paths}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    def prepare(raw: bytes, kind: str):
        """On a worker thread: the validated request, its model and its prompt tokens."""
        body = parse_json(raw)
        completion = responses_api.parse(body) if kind == "responses" else request_params.parse(body, kind)
        name, loaded = model_of(models, completion.model)
        try:
            ids = (loaded.encode_text(completion.prompt) if completion.messages is None
                   else loaded.encode_chat(completion.messages))
        except (ValueError, TypeError, LookupError) as e:  # jinja2's TemplateError is a plain Exception subclass
            raise ApiError(400, f"The model's chat template refused these messages: {e}", "invalid_messages",
                           completion.prompt_field) from None
        except Exception as e:
            if type(e).__module__.startswith("jinja2"):
                raise ApiError(400, f"The model's chat template refused these messages: {e}", "invalid_messages",
                               completion.prompt_field) from None
            raise
        return name, loaded, completion, ids

    async def complete(http: HttpRequest, kind: str):
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        name, loaded, completion, ids = await loop.run_in_executor(cpu, prepare, await http.body(), kind)
        requests = choices(completion, loaded, ids)
        try:
            job = batcher.submit(name, requests, completion.stream)
        except QueueFull as e:
            raise ApiError(429, "The server is busy: its queue is full. Retry after a moment.", "queue_full",
                           headers={"Retry-After": str(e.retry_after)}) from None
        if kind == "responses":
            answer = responses_api.ResponseAnswer(name, loaded.tokenizer, job, completion.echo)
            events = responses_api.ResponseEvents(answer)
        else:
            answer = Answer(kind, f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}", name,
                            loaded.tokenizer, job)
            events = ChunkEvents(answer, completion.include_usage)
        deadline = started + limits.request_timeout_s

        def finish(reason: str) -> None:
            batcher.cancel(job, reason)  # does nothing to a job that finished
            metrics.request_took(time.monotonic() - started)

        if completion.stream:
            return EventStream(events, deadline, finish, metrics)
        gone = asyncio.ensure_future(wait_for_disconnect(http.receive))
        reason = "handler"
        try:
            done, _ = await asyncio.wait({job.done, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
            if job.done not in done:
                reason = "disconnect" if gone in done else "timeout"
                if reason == "disconnect":
                    return Response(status_code=CLIENT_GONE)
                raise ApiError(504, f"The request took longer than this server allows "
                               f"({limits.request_timeout_s:g} s).", "timeout")
            reason = "done"
            if job.error is not None:
                raise ApiError(500, "Generation failed on the server.", "server_error")
            return JSONResponse(await loop.run_in_executor(cpu, answer.body))
        finally:
            gone.cancel()
            finish(reason)

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HttpRequest):
        return await complete(http, "chat")

    @app.post("/v1/completions")
    async def completions(http: HttpRequest):
        return await complete(http, "text")

    @app.post("/v1/responses")
    async def responses(http: HttpRequest):
        return await complete(http, "responses")

    @app.api_route("/v1/responses/{rid:path}", methods=["GET", "DELETE", "POST"])
    async def stored_response(rid: str):
        raise ApiError(404, f"No response '{rid}' is stored here: this server stores none (\"store\": false). Keep the "
                       "output you received, and send the whole conversation as 'input'.", "not_found")

    return Guard(app, keys, metrics, limits.max_body_bytes, limits.body_timeout_s)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"The request body is nested too deeply (at most {MAX_JSON_DEPTH} levels).",
                       "invalid_json") from None
    except (ValueError, UnicodeDecodeError):  # ValueError covers JSONDecodeError and integers of 4300+ digits
        raise ApiError(400, "The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    stack = [(body, 1)]
    while stack:  # iterative, so that checking the depth cannot itself overflow the stack
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"The request body is nested too deeply (at most {MAX_JSON_DEPTH} levels).",
                           "invalid_json")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return body


def model_of(models: dict, name: str | None):
    """(served name, model)."""
    if name is None:
        if len(models) == 1:
            return next(iter(models.items()))
        raise ApiError(400, f"'model' is required: this server serves {', '.join(models)}.", "missing_model", "model")
    if name not in models:
        raise ApiError(404, f"The model '{name}' does not exist; GET /v1/models lists the served models.",
                       "model_not_found", "model")
    return name, models[name]


def choices(completion, loaded, ids: list[int]) -> list[Request]:
    """One engine request per choice (n); choice i of a seeded request draws with seed + i."""
    room = loaded.context_length - len(ids)
    if room <= 0:
        raise ApiError(400, f"This model's maximum context length is {loaded.context_length} tokens; "
                       f"'{completion.prompt_field}' comes to {len(ids)}. Shorten it.", "context_length_exceeded",
                       completion.prompt_field)
    requests = []
    for i in range(completion.n):
        params = dataclasses.replace(completion.params, stop=list(completion.params.stop),
                                     max_new_tokens=min(completion.params.max_new_tokens, room))
        if params.seed is not None and i:
            params.seed = (params.seed + i + (1 << 63)) % (1 << 64) - (1 << 63)  # stays a signed 64-bit seed
        requests.append(Request(list(ids), params))
    return requests
