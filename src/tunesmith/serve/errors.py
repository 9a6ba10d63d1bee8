"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}`, one per HTTP status family.

Client mistakes are `invalid_request_error` (4xx); faults of the server itself are `server_error` (5xx), so a client
can tell "fix your request" from "try again later".
"""

from __future__ import annotations

# OpenAI calls a wrong key an `invalid_request_error` too; only a full queue has a type of its own.
KIND_BY_STATUS = {429: "rate_limit_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}


def kind_of(status: int) -> str:
    return "server_error" if status >= 500 else KIND_BY_STATUS.get(status, "invalid_request_error")


def error_body(message: str, code: str, param: str | None = None, status: int = 400) -> dict:
    return {"error": {"message": message, "type": kind_of(status), "param": param, "code": code}}
