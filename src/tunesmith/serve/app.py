"""The OpenAI-compatible HTTP API: GET /v1/models, POST /v1/chat/completions, POST /v1/completions.

Client mistakes get OpenAI-style error JSON with a 4xx status (400 bad body, 401 key, 404 model), never a 500.
Streaming responses are server-sent events ending with `data: [DONE]`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import FastAPI, Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.infer.engine import Request, SamplingParams
from tunesmith.infer.loading import LoadedModel
from tunesmith.serve.batcher import Batcher


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(message: str, code: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def create_app(models: dict[str, LoadedModel], api_key: str | None = None, max_batch: int = 16) -> FastAPI:
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None)
    batcher = Batcher(models, max_batch)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_, e: ApiError):
        return JSONResponse(error_body(e.message, e.code, e.param), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_, e: RequestValidationError):
        return JSONResponse(error_body(str(e.errors()[:1]), "invalid_request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_, e: StarletteHTTPException):
        return JSONResponse(error_body(str(e.detail), "not_found" if e.status_code == 404 else "http_error"),
                            status_code=e.status_code)

    @app.middleware("http")
    async def _auth(request: HttpRequest, call_next):
        if api_key and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return JSONResponse(error_body("Incorrect API key provided.", "invalid_api_key"), status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "tunesmith"} for name in models]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    async def body_of(request: HttpRequest) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "The request body is not valid JSON.", "invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
        return body

    def model_of(body: dict) -> LoadedModel:
        name = body.get("model")
        if name is None and len(models) == 1:
            return next(iter(models.values()))
        if name not in models:
            raise ApiError(404, f"The model '{name}' does not exist; GET /v1/models lists the served models.",
                           "model_not_found", "model")
        return models[name]

    def build_request(body: dict, model: LoadedModel, prompt_ids: list[int]) -> Request:
        params = sampling_params(body)
        room = model.context_length - len(prompt_ids)
        if room <= 0:
            raise ApiError(400, f"This model's maximum context length is {model.context_length} tokens; the prompt "
                           f"has {len(prompt_ids)}. Shorten the prompt.", "context_length_exceeded", "messages")
        params.max_new_tokens = min(params.max_new_tokens, room)
        return Request(prompt_ids, params)

    async def run(model: LoadedModel, request: Request, body: dict, kind: str):
        stream = bool(body.get("stream", False))
        job = await batcher.submit(model.name, request, stream)
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"
        if not stream:
            await job.done
            if job.error is not None:
                raise ApiError(500, f"generation failed: {job.error}", "server_error")
            return completion_body(kind, rid, model.name, request)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(stream_events(kind, rid, model.name, job, usage), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HttpRequest):
        body = await body_of(request)
        model = model_of(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list of {role, content}.", "invalid_messages",
                           "messages")
        clean = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
                raise ApiError(400, f"Invalid message {m!r}: role must be system, user or assistant.",
                               "invalid_messages", "messages")
            clean.append({"role": "system" if m["role"] == "developer" else m["role"],
                          "content": content_text(m.get("content"))})
        ids = model.encode_chat(clean)
        return await run(model, build_request(body, model, ids), body, "chat")

    @app.post("/v1/completions")
    async def completions(request: HttpRequest):
        body = await body_of(request)
        model = model_of(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "'prompt' must be a string.", "invalid_prompt", "prompt")
        ids = model.encode_text(prompt)
        return await run(model, build_request(body, model, ids), body, "text")

    return app


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if content is None:
        return ""
    raise ApiError(400, "Message content must be a string or a list of text parts.", "invalid_messages", "messages")


def sampling_params(body: dict) -> SamplingParams:
    def number(key: str, default, low: float, high: float, cast=float):
        value = body.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ApiError(400, f"'{key}' must be a number in [{low}, {high}].", "invalid_value", key)
        return cast(value)

    if (body.get("n") or 1) != 1:
        raise ApiError(400, "Only n=1 is supported.", "invalid_value", "n")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise ApiError(400, "'stop' must be a string or a list of up to 4 strings.", "invalid_value", "stop")
    budget_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, "'seed' must be an integer.", "invalid_value", "seed")
    return SamplingParams(
        max_new_tokens=number(budget_key, 256, 1, 1 << 20, int),
        temperature=number("temperature", 1.0, 0.0, 2.0),
        top_p=number("top_p", 1.0, 0.0, 1.0),
        stop=stop, seed=seed,
    )


def _usage(request: Request) -> dict:
    prompt, completion = len(request.prompt_ids), len(request.completion_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(kind: str, rid: str, model: str, request: Request) -> dict:
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": request.text},
                  "finish_reason": request.finish_reason, "logprobs": None}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": request.text, "finish_reason": request.finish_reason, "logprobs": None}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [choice],
            "usage": _usage(request)}


async def stream_events(kind: str, rid: str, model: str, job, include_usage: bool):
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    created = int(time.time())

    def event(choices: list, **extra) -> str:
        return "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": model,
                                      "choices": choices, **extra}, ensure_ascii=False) + "\n\n"

    def choice(text: str | None, finish: str | None, first: bool = False) -> dict:
        if kind == "chat":
            delta = ({"role": "assistant", "content": ""} if first else {}) | ({"content": text} if text else {})
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}

    if kind == "chat":
        yield event([choice(None, None, first=True)])
    while (text := await job.chunks.get()) is not None:
        yield event([choice(text, None)])
    await job.done
    if job.error is not None:
        yield "data: " + json.dumps(error_body(f"generation failed: {job.error}", "server_error",
                                               kind="server_error")) + "\n\n"
    else:
        yield event([choice(None, job.request.finish_reason)])
        if include_usage:
            yield event([], usage=_usage(job.request))
    yield "data: [DONE]\n\n"
