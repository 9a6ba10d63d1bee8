"""Every field of a completion request checked before the request goes anywhere near a batch.

A parameter this server does not honour is refused with a 400 that names it, never silently ignored: a client that
asks for `tools` or `logit_bias` must learn it did not get them. `user` and `metadata` are labels that change
nothing, so they are accepted. A null value counts as "not given" (some clients send every field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tunesmith.infer.engine import SAMPLING_RANGES, SamplingParams
from tunesmith.serve.errors import ApiError

MAX_N = 8  # choices per request: each one is a row of the batch
MAX_TOP_LOGPROBS = 20  # OpenAI's own limit for chat; completions allow 5
MAX_STOP = 4
SEED_RANGE = (-(1 << 63), (1 << 63) - 1)  # what a torch.Generator (and OpenAI's int64 seed) takes

COMMON = {"model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "n",
          "frequency_penalty", "presence_penalty", "repetition_penalty", "logprobs", "user", "metadata"}
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format"}
TEXT_FIELDS = COMMON | {"prompt", "echo", "best_of", "suffix"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MESSAGE_FIELDS = {"role", "content", "name"}


@dataclass
class Completion:
    """A validated request: what to decode and how to answer."""

    kind: str  # "chat" or "text"
    model: str | None
    messages: list[dict[str, str]] | None
    prompt: str | None
    params: SamplingParams
    n: int
    stream: bool
    include_usage: bool
    echo: dict | None = None  # what a Responses API answer repeats from its request

    @property
    def prompt_field(self) -> str:
        """The request field that holds the prompt, named in errors about it."""
        return "input" if self.echo is not None else "messages" if self.messages is not None else "prompt"


def parse(body: dict[str, Any], kind: str) -> Completion:
    refuse_unknown(body, CHAT_FIELDS if kind == "chat" else TEXT_FIELDS)
    model = model_name(body)
    stream = flag(body, "stream")
    include_usage = stream_options(body.get("stream_options"), stream)
    if kind == "chat":
        messages, prompt = chat_messages(body.get("messages")), None
        logprobs = chat_logprobs(body)
        response_format(body.get("response_format"))
        budget_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    else:
        messages, prompt = None, text_prompt(body.get("prompt"))
        logprobs = integer(body, "logprobs", None, 0, 5)
        text_only_extras(body)
        budget_key = "max_tokens"
    params = sampling(body, budget_key, logprobs)
    return Completion(kind, model, messages, prompt, params, integer(body, "n", 1, 1, MAX_N), stream, include_usage)


def refuse_unknown(body: dict, allowed: set[str]) -> None:
    unknown = sorted(k for k, v in body.items() if k not in allowed and v is not None)
    if unknown:
        names = ", ".join(f"'{k}'" for k in unknown)
        raise ApiError(400, f"Unsupported parameter(s) {names}: this server does not honour them. Remove them.",
                       "unsupported_parameter", unknown[0])


def model_name(body: dict) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string (a name from GET /v1/models).", "invalid_type", "model")
    return model


def sampling(body: dict, budget_key: str, logprobs: int | None) -> SamplingParams:
    """The sampling fields every endpoint shares; `budget_key` names its token budget."""
    limit = SAMPLING_RANGES
    return SamplingParams(
        max_new_tokens=integer(body, budget_key, 256, *limit["max_new_tokens"]),
        temperature=number(body, "temperature", 1.0, *limit["temperature"]),
        top_p=number(body, "top_p", 1.0, *limit["top_p"]),
        top_k=max(0, integer(body, "top_k", 0, *limit["top_k"])),
        repetition_penalty=number(body, "repetition_penalty", 1.0, *limit["repetition_penalty"]),
        stop=stop_strings(body.get("stop")),
        seed=integer(body, "seed", None, *SEED_RANGE),
        frequency_penalty=number(body, "frequency_penalty", 0.0, *limit["frequency_penalty"]),
        presence_penalty=number(body, "presence_penalty", 0.0, *limit["presence_penalty"]),
        logprobs=logprobs,
    )


def number(body: dict, key: str, default, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                               and low <= value <= high):
        raise ApiError(400, f"'{key}' must be a number from {low:g} to {high:g}.", "invalid_value", key)
    return float(value)


def integer(body: dict, key: str, default, low: int, high: int):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer() and abs(value) < 1 << 53:
        value = int(value)  # 8.0 from a JavaScript client is the integer 8
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"'{key}' must be an integer from {low} to {high}.", "invalid_value", key)
    return value


def flag(body: dict, key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"'{key}' must be true or false.", "invalid_type", key)
    return value


def stream_options(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object such as {\"include_usage\": true}.", "invalid_type",
                       "stream_options")
    if not stream:
        raise ApiError(400, "'stream_options' is only allowed with \"stream\": true.", "invalid_value",
                       "stream_options")
    # include_obfuscation pads chunks against length side channels; refusing it would break clients for nothing.
    unknown = sorted(set(options) - {"include_usage", "include_obfuscation"})
    if unknown:
        raise ApiError(400, f"Unsupported stream option '{unknown[0]}'.", "unsupported_parameter",
                       f"stream_options.{unknown[0]}")
    for key in ("include_usage", "include_obfuscation"):
        if options.get(key) is not None and not isinstance(options[key], bool):
            raise ApiError(400, f"'stream_options.{key}' must be true or false.", "invalid_type",
                           f"stream_options.{key}")
    return bool(options.get("include_usage"))


def chat_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content}.", "invalid_messages", "messages")
    clean = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"'{where}' must be an object with role and content.", "invalid_messages", where)
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ApiError(400, f"'{where}.role' must be system, developer, user or assistant (tools and functions "
                           "are not supported).", "invalid_messages", f"{where}.role")
        # Clients that echo an earlier answer back send tool_calls: null, refusal: null, annotations: [].
        extra = sorted(k for k, v in m.items() if k not in MESSAGE_FIELDS and v not in (None, [], ""))
        if extra:
            raise ApiError(400, f"'{where}.{extra[0]}' is not supported by this server.", "unsupported_parameter",
                           f"{where}.{extra[0]}")
        clean.append({"role": ROLES[role], "content": content_text(m.get("content"), f"{where}.content")})
    return clean


def content_text(content: Any, where: str, kinds: tuple[str, ...] = ("text",)) -> str:
    """A message's text: a string, or a list of text parts (`kinds`: the part types that carry text)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in kinds or not isinstance(part.get("text"), str):
                example = f'{{"type": "{kinds[0]}", "text": ...}}'
                raise ApiError(400, f"'{where}' may only hold text parts ({example}); this server reads no images, "
                               "audio or files.", "invalid_messages", where)
            parts.append(part["text"])
        return "".join(parts)
    raise ApiError(400, f"'{where}' must be a string or a list of text parts.", "invalid_messages", where)


def text_prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be one string (token arrays and several prompts per request are not "
                       "supported).", "invalid_prompt", "prompt")
    return prompt


def text_only_extras(body: dict) -> None:
    """Legacy completion fields that only have a default this server can honour."""
    if body.get("echo"):
        raise ApiError(400, "'echo' is not supported.", "unsupported_parameter", "echo")
    if body.get("best_of") not in (None, 1):
        raise ApiError(400, "'best_of' is not supported (use n).", "unsupported_parameter", "best_of")
    if body.get("suffix") not in (None, ""):
        raise ApiError(400, "'suffix' (fill-in-the-middle) is not supported.", "unsupported_parameter", "suffix")


def chat_logprobs(body: dict) -> int | None:
    """None: no log-probabilities; k: the chosen token's and its k best alternatives'."""
    wanted = flag(body, "logprobs")
    top = integer(body, "top_logprobs", None, 0, MAX_TOP_LOGPROBS)
    if top is not None and not wanted:
        raise ApiError(400, "'top_logprobs' needs \"logprobs\": true.", "invalid_value", "top_logprobs")
    return (top or 0) if wanted else None


def response_format(value: Any, key: str = "response_format") -> None:
    """Only plain text: `key` is where the format sits (`text.format` in the Responses API)."""
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind in ("json_object", "json_schema"):
        raise ApiError(400, f"{key} '{kind}' is not supported: this server cannot constrain its output to JSON. "
                       "Ask for JSON in the prompt and validate it yourself.", "unsupported_parameter", key)
    raise ApiError(400, f"'{key}' must be {{\"type\": \"text\"}}.", "invalid_value", key)


def stop_strings(stop: Any) -> list[str]:
    stop = [stop] if isinstance(stop, str) else (stop if stop is not None else [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > MAX_STOP:
        raise ApiError(400, f"'stop' must be a string or a list of up to {MAX_STOP} strings.", "invalid_value", "stop")
    return [s for s in stop if s]
