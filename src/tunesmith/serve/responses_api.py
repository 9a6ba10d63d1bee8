"""The Responses API, POST /v1/responses: what the official `openai` client leads with (`client.responses.create`),
served by the same batcher as chat completions.

Stateless: this server stores nothing, so `previous_response_id` and `conversation` are refused (send the whole
conversation in `input`) and every response says `"store": false`. As on the other endpoints, a field this server
cannot honour (tools, reasoning, JSON output, images) is refused with a 400 that names it, never ignored.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tunesmith.serve import params as request_params
from tunesmith.serve.errors import ApiError
from tunesmith.serve.params import ROLES, Completion
from tunesmith.serve.responses import Answer, sse

LOGPROBS = "message.output_text.logprobs"  # the one `include` this server can honour
LABELS = {"metadata", "user", "safety_identifier", "prompt_cache_key"}  # change nothing
EXTRAS = {"top_k", "seed", "stop", "repetition_penalty", "frequency_penalty", "presence_penalty"}  # as on chat
FIELDS = {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "stream_options",
          "include", "top_logprobs", "text", "store"} | LABELS | EXTRAS
# Fields accepted only at values that ask for nothing this server lacks (max_tool_calls: at none).
ONLY = {"tools": ([],), "tool_choice": ("auto", "none"), "parallel_tool_calls": (True, False),
        "background": (False,), "truncation": ("disabled",), "service_tier": ("auto", "default"), "max_tool_calls": ()}
STATELESS = ("previous_response_id", "conversation")
ITEM_FIELDS = {"type", "role", "content", "id", "status"}
PART_KINDS = ("input_text", "output_text")


def parse(body: dict[str, Any]) -> Completion:
    for key in STATELESS:
        if body.get(key) is not None:
            raise ApiError(400, f"'{key}' is not supported: this server stores no responses or conversations. Send "
                           "the whole conversation in 'input'.", "unsupported_parameter", key)
    for key, accepted in ONLY.items():
        value = body.get(key)
        if value is not None and not any(type(value) is type(a) and value == a for a in accepted):
            what = "tools" if key in ("tools", "tool_choice", "max_tool_calls") else f"'{key}': {value!r}"
            raise ApiError(400, f"'{key}' is not supported: this server cannot honour {what}. Remove it.",
                           "unsupported_parameter", key)
    reasoning = body.get("reasoning")
    if reasoning is not None and (not isinstance(reasoning, dict) or any(v is not None for v in reasoning.values())):
        raise ApiError(400, "'reasoning' is not supported: the served models do not reason before they answer. "
                       "Remove it.", "unsupported_parameter", "reasoning")
    request_params.refuse_unknown(body, FIELDS | set(ONLY) | {"reasoning"})
    model = request_params.model_name(body)
    stream = request_params.flag(body, "stream")
    request_params.stream_options(body.get("stream_options"), stream)
    request_params.flag(body, "store")
    text_config(body.get("text"))
    params = request_params.sampling(body, "max_output_tokens", logprobs(body))
    echo = {"instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {}, "user": body.get("user"), "temperature": params.temperature,
            "top_p": params.top_p, "top_logprobs": body.get("top_logprobs") or 0}
    return Completion("chat", model, messages(body), None, params, 1, stream, False, echo)


def text_config(text: Any) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise ApiError(400, "'text' must be an object such as {\"format\": {\"type\": \"text\"}}.", "invalid_type",
                       "text")
    request_params.response_format(text.get("format"), "text.format")
    unknown = sorted(k for k, v in text.items() if k != "format" and v is not None and v != "medium")
    if unknown:
        raise ApiError(400, f"'text.{unknown[0]}' is not supported by this server.", "unsupported_parameter",
                       f"text.{unknown[0]}")


def logprobs(body: dict) -> int | None:
    """None: no log-probabilities; k: the chosen token's and its k best alternatives' (as on chat)."""
    include = body.get("include")
    if include is not None and (not isinstance(include, list) or not all(isinstance(i, str) for i in include)):
        raise ApiError(400, "'include' must be a list of strings.", "invalid_type", "include")
    other = sorted(set(include or []) - {LOGPROBS})
    if other:
        raise ApiError(400, f"include '{other[0]}' is not supported: this server can include only '{LOGPROBS}'.",
                       "unsupported_parameter", "include")
    top = request_params.integer(body, "top_logprobs", None, 0, request_params.MAX_TOP_LOGPROBS)
    return (top or 0) if include or top is not None else None


def messages(body: dict) -> list[dict[str, str]]:
    """`instructions` as the system message, then `input`: a string (one user message) or a list of messages."""
    out = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ApiError(400, "'instructions' must be a string.", "invalid_type", "instructions")
        out.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        return out + [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise ApiError(400, "'input' must be a string or a non-empty list of messages ({role, content}).",
                       "invalid_input", "input")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"'{where}' must be a message object with role and content.", "invalid_input", where)
        kind = item.get("type") or "message"
        if kind != "message":
            raise ApiError(400, f"'{where}' is a '{kind}' item: this server reads messages only (no tools, "
                           "reasoning or item references).", "unsupported_parameter", where)
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ApiError(400, f"'{where}.role' must be system, developer, user or assistant.", "invalid_input",
                           f"{where}.role")
        extra = sorted(k for k, v in item.items() if k not in ITEM_FIELDS and v not in (None, [], ""))
        if extra:
            raise ApiError(400, f"'{where}.{extra[0]}' is not supported by this server.", "unsupported_parameter",
                           f"{where}.{extra[0]}")
        text = request_params.content_text(item.get("content"), f"{where}.content", PART_KINDS)
        out.append({"role": ROLES[role], "content": text})
    return out


class ResponseAnswer(Answer):
    """One job as a Responses API `response` object (one message with one output_text part)."""

    def __init__(self, model: str, tokenizer, job, echo: dict):
        super().__init__("chat", f"resp_{secrets.token_hex(12)}", model, tokenizer, job)
        self.object, self.echo, self.item_id = "response", echo, f"msg_{secrets.token_hex(12)}"

    @property
    def request(self):
        return self.job.requests[0]

    def status(self) -> str:
        return "incomplete" if self.request.finish_reason == "length" else "completed"

    def all_logprobs(self) -> list[dict]:
        r = self.request
        return self.logprobs(r, 0, len(r.logprobs), 0)["content"] if r.params.logprobs is not None else []

    def part(self, text: str, logprobs: list) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}

    def message(self, status: str, content: list[dict]) -> dict:
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content}

    def envelope(self, status: str, output: list[dict], error: dict | None = None) -> dict:
        finished = status in ("completed", "incomplete")
        usage = None
        if finished:
            used = self.usage()
            usage = {"input_tokens": used["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": used["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": used["total_tokens"]}
        return {"id": self.rid, "object": "response", "created_at": self.created, "status": status,
                "completed_at": int(time.time()) if status == "completed" else None, "error": error,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "model": self.model, "output": output, "parallel_tool_calls": True, "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None}, "store": False, "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "truncation": "disabled", "usage": usage, **self.echo}

    def final_message(self) -> dict:
        return self.message(self.status(), [self.part(self.request.text, self.all_logprobs())])

    def body(self) -> dict:
        return self.envelope(self.status(), [self.final_message()])


class ResponseEvents:
    """How /v1/responses streams: typed, numbered events (response.created ... response.completed), no [DONE]."""

    def __init__(self, answer: ResponseAnswer):
        self.answer, self.sequence, self.sent_logprobs = answer, 0, 0
        self.where = {"item_id": answer.item_id, "output_index": 0, "content_index": 0}

    def event(self, kind: str, **fields) -> str:
        frame = sse({"type": kind, "sequence_number": self.sequence, **fields}, event=kind)
        self.sequence += 1
        return frame

    def opening(self) -> list[str]:
        a = self.answer
        return [self.event("response.created", response=a.envelope("in_progress", [])),
                self.event("response.in_progress", response=a.envelope("in_progress", [])),
                self.event("response.output_item.added", output_index=0, item=a.message("in_progress", [])),
                self.event("response.content_part.added", **self.where, part=a.part("", []))]

    def delta(self, index: int, text: str, covered: int | None) -> list[str]:
        r = self.answer.request
        logprobs = []
        if r.params.logprobs is not None:
            end = len(r.logprobs) if covered is None else covered
            logprobs = self.answer.logprobs(r, self.sent_logprobs, end, 0)["content"]
            self.sent_logprobs = end
        if not text and not logprobs:
            return []
        return [self.event("response.output_text.delta", **self.where, delta=text, logprobs=logprobs)]

    def closing(self) -> list[str]:
        a = self.answer
        text, logprobs = a.request.text, a.all_logprobs()
        final = a.message(a.status(), [a.part(text, logprobs)])  # final_message(), without decoding them again
        return [self.event("response.output_text.done", **self.where, text=text, logprobs=logprobs),
                self.event("response.content_part.done", **self.where, part=a.part(text, logprobs)),
                self.event("response.output_item.done", output_index=0, item=final),
                self.event(f"response.{a.status()}", response=a.envelope(a.status(), [final]))]

    def failed(self, message: str, code: str, status: int) -> list[str]:
        error = {"code": "server_error", "message": message}  # OpenAI's codes have no timeout; the message says it
        return [self.event("response.failed", response=self.answer.envelope("failed", [], error))]
