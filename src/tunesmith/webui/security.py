"""Who may use the Web UI: a login when it is reachable from other machines, and no requests from other origins.

`Guard` is an ASGI middleware in front of everything the server answers (the page, Gradio's `/gradio_api/*`
handlers and `/gradio_api/file=` downloads, static files): nothing is routed before it has decided. Gradio's own
`auth=` leaves routes unchecked (e.g. its run-history and upload-progress routes) and its CORS rule allows any origin
once the host is not localhost, so the decision is made here, once, for every path.

- Login: with credentials, a request needs the session cookie set by the login form, or HTTP basic auth (scripts);
  anything else is 401 (a browser navigation gets the login form). Credentials come from the environment or a file
  (`TUNESMITH_WEBUI_AUTH=user:password`, `--auth-file`, `TUNESMITH_WEBUI_AUTH_FILE`); bound to anything but loopback
  without them, a random password is generated and printed at start. On loopback without them the page is open.
- Origins: a request that carries an `Origin` other than the page's own (scheme + the Host it was asked for) is 403,
  preflights included, so no other web page (another `http://localhost:PORT` app included) can drive the UI with
  the user's cookie. Open on loopback (no login), the Host must be a loopback name too: a DNS-rebinding page cannot
  pass as this one. (With a login it need not be: a rebinding page has no session, and a reverse proxy may use its
  own name.)
- Framing: every response says X-Frame-Options: DENY, so no other site can show the page in a frame.
"""

from __future__ import annotations

import base64
import hmac
import html
import ipaddress
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from tunesmith.errors import TunesmithError
from tunesmith.webui.i18n import language_from_header, text

AUTH_VARIABLE = "TUNESMITH_WEBUI_AUTH"
AUTH_FILE_VARIABLE = "TUNESMITH_WEBUI_AUTH_FILE"
GENERATED_USER = "tunesmith"
LOGIN_PATH, LOGOUT_PATH = "/ts/login", "/ts/logout"
MAX_LOGIN_BODY = 8192  # a login form is two short fields; a larger body is not one
SECURITY_HEADERS = [(b"cache-control", b"no-store")]


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); a name is not looked up."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """'example.com:7860' -> 'example.com', '[::1]:7860' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)
    origin: str  # where they came from, for the start-up line; never the secret itself

    @property
    def generated(self) -> bool:
        return self.origin == "generated"

    def match(self, user: str, password: str) -> bool:
        same_user = hmac.compare_digest(user.encode("utf-8"), self.user.encode("utf-8"))
        same_password = hmac.compare_digest(password.encode("utf-8"), self.password.encode("utf-8"))
        return same_user and same_password


def parse_credentials(value: str, origin: str) -> Credentials:
    user, sep, password = value.strip().partition(":")
    if not sep or not user.strip() or not password:
        raise TunesmithError(f"webui: {origin} must hold user:password (both non-empty); the value is not shown")
    return Credentials(user.strip(), password, origin)


def _read_credentials_file(path: str, origin: str) -> Credentials:
    try:
        first = Path(path).expanduser().read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise TunesmithError(f"webui: cannot read the credentials file {path} ({reason}); it should hold one line "
                             "user:password") from None
    return parse_credentials(first[0] if first else "", f"{origin} {path}")


def configured_credentials(auth_file: str | None = None, environ=os.environ) -> Credentials | None:
    """Credentials the user set: --auth-file, else TUNESMITH_WEBUI_AUTH, else TUNESMITH_WEBUI_AUTH_FILE (or None)."""
    if auth_file:
        return _read_credentials_file(auth_file, "--auth-file")
    if environ.get(AUTH_VARIABLE):
        return parse_credentials(environ[AUTH_VARIABLE], AUTH_VARIABLE)
    if environ.get(AUTH_FILE_VARIABLE):
        return _read_credentials_file(environ[AUTH_FILE_VARIABLE], AUTH_FILE_VARIABLE)
    return None


def generated_credentials() -> Credentials:
    return Credentials(GENERATED_USER, secrets.token_urlsafe(16), "generated")


class Gate:
    """The decision `Guard` applies: who is logged in (sessions), which hosts and origins are this page's own."""

    def __init__(self, credentials: Credentials | None, port: int, loopback_only: bool):
        self.credentials = credentials
        self.loopback_only = loopback_only
        self.cookie = f"tunesmith-session-{port}"  # per port: two UIs on one host keep their own sessions
        self._sessions: dict[str, str] = {}
        self._lock = threading.Lock()

    def open_session(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = user
        return token

    def close_session(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def session_token(self, headers: dict[str, str]) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except CookieError:  # a malformed cookie header is simply no session
            return None
        return jar[self.cookie].value if self.cookie in jar else None

    def user(self, headers: dict[str, str]) -> str | None:
        """The logged-in user of a request: its session cookie, or HTTP basic auth; None when neither is valid."""
        if self.credentials is None:
            return "local"
        with self._lock:
            user = self._sessions.get(self.session_token(headers) or "")
        if user is not None:
            return user
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
            except ValueError:
                return None
            if self.credentials.match(name, password):
                return name
        return None

    def user_of_request(self, request) -> str | None:
        """Gradio's auth_dependency: the same answer, so Gradio's own checks agree with the Guard's."""
        return self.user({k.lower(): v for k, v in request.headers.items()})

    def refusal(self, scheme: str, headers: dict[str, str]) -> str | None:
        """Why a request from this host/origin is refused, or None. The page's own origin is the scheme and the
        Host it was asked for; bound to loopback, that Host must be a loopback name."""
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(host_name(host)):
            return f"this web UI answers only on this machine (localhost), not as {host_name(host) or 'no host'}"
        origin = headers.get("origin")
        own = f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}".lower()
        if origin is not None and origin.lower() != own:
            return f"cross-origin request from {origin} refused; open the page at {own}"
        return None


class Guard:
    """ASGI middleware: host/origin check, the login form and session, then the app (see the module docstring)."""

    def __init__(self, app, gate: Gate):
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        send = _never_framed(send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.gate.refusal(scope.get("scheme", "http"), headers)
        if refusal is not None:
            return await self._deny(scope, send, 403, refusal)
        if self.gate.credentials is None:
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if scope["type"] == "http" and path == LOGIN_PATH and method == "POST":
            return await self._login(scope, receive, send, headers)
        if scope["type"] == "http" and path == LOGOUT_PATH:
            self.gate.close_session(self.gate.session_token(headers))
            return await self._respond(send, 303, b"", [(b"location", b"/"), self._cookie_header(scope, "", 0)])
        if self.gate.user(headers) is None:
            if scope["type"] == "http" and method in ("GET", "HEAD") and "text/html" in headers.get("accept", ""):
                return await self._login_page(send, headers, failed=False)
            return await self._deny(scope, send, 401, "login required: open the page and log in, or send HTTP "
                                                      "basic auth")
        return await self.app(scope, receive, send)

    async def _login(self, scope, receive, send, headers):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_LOGIN_BODY:
                return await self._deny(scope, send, 413, "login form too large")
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode("utf-8", "replace"))
        user, password = form.get("username", [""])[0].strip(), form.get("password", [""])[0]
        if self.gate.credentials is None or not self.gate.credentials.match(user, password):
            return await self._login_page(send, headers, failed=True)
        token = self.gate.open_session(user)
        return await self._respond(send, 303, b"", [(b"location", b"/"), self._cookie_header(scope, token, None)])

    def _cookie_header(self, scope, token: str, max_age: int | None) -> tuple[bytes, bytes]:
        # HttpOnly: page scripts never see it; SameSite=Strict: other sites' pages never send it.
        parts = [f"{self.gate.cookie}={token}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if scope.get("scheme") == "https":
            parts.append("Secure")
        return b"set-cookie", "; ".join(parts).encode("latin-1")

    async def _login_page(self, send, headers, failed: bool):
        lang = language_from_header(headers.get("accept-language"))
        page = login_page(lang, text(lang, "login.failed") if failed else "")
        await self._respond(send, 401, page.encode("utf-8"), [(b"content-type", b"text/html; charset=utf-8")])

    async def _deny(self, scope, send, status: int, reason: str):
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        body = json.dumps({"error": reason}).encode("utf-8")
        await self._respond(send, status, body, [(b"content-type", b"application/json")])

    @staticmethod
    async def _respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]):
        headers = [*headers, *SECURITY_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _never_framed(send):
    async def send_unframed(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-frame-options"]
            message = {**message, "headers": [*headers, (b"x-frame-options", b"DENY")]}
        await send(message)

    return send_unframed


LOGIN_STYLE = ("body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0}"
               "form{max-width:340px;margin:12vh auto;background:#fff;padding:28px;border-radius:10px;"
               "box-shadow:0 1px 4px #0002}h1{font-size:1.3em;margin:0 0 16px}label{display:block;margin:10px 0 4px}"
               "input{width:100%;box-sizing:border-box;padding:8px;font-size:1em}"
               "button{margin-top:18px;width:100%;padding:10px;font-size:1em;background:#2563eb;color:#fff;border:0;"
               "border-radius:6px}.error{color:#7f1d1d;background:#fdecec;padding:6px 8px;border-radius:6px}"
               ".hint{color:#6b7280;font-size:.9em}")


def login_page(lang: str, error: str = "") -> str:
    """The form a browser gets instead of the page until it logs in (self-contained: no script, no other file)."""
    def t(key: str) -> str:
        return html.escape(text(lang, key))

    note = f'<p class="error" id="ts-login-error">{html.escape(error)}</p>' if error else ""
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>tunesmith</title>'
            f'<meta name="viewport" content="width=device-width"><style>{LOGIN_STYLE}</style></head><body>'
            f'<form id="ts-login" method="post" action="{LOGIN_PATH}"><h1>{t("login.title")}</h1>{note}'
            f'<label for="ts-user">{t("login.user")}</label>'
            f'<input id="ts-user" name="username" autocomplete="username" required autofocus>'
            f'<label for="ts-password">{t("login.password")}</label>'
            f'<input id="ts-password" name="password" type="password" autocomplete="current-password" required>'
            f'<button type="submit" id="ts-login-submit">{t("login.submit")}</button>'
            f'<p class="hint">{t("login.hint")}</p></form></body></html>')
