"""A real OpenAI-compatible judge for tests: an http.server in a thread answering GET /v1/models and
POST /v1/chat/completions. Its reply is scripted from the question and the two answers it was shown, and it records
every request, so a test can check what the judge was asked (and with which Authorization header).

`RedirectServer` answers every request with a redirect to another server: a judge URL that moved elsewhere."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Script = Callable[[str, str, str], str]  # (question, answer A, answer B) -> the judge's reply text
_SHOWN = re.compile(r"\[Question\]\n(.*)\n\n\[Answer A\]\n(.*)\n\[End of answer A\]\n\n\[Answer B\]\n(.*)\n"
                    r"\[End of answer B\]", re.DOTALL)


class JudgeServer:
    def __init__(self, script: Script, models: tuple[str, ...] = ("judge-1",), key: str | None = None,
                 host: str = "127.0.0.1", moved: dict[str, str] | None = None):
        self.script, self.models, self.key = script, models, key
        self.moved = moved or {}  # path -> path on this same server, answered with a 301
        self.asked: list[tuple[str, str, str]] = []  # (question, A, B) of every chat request, in arrival order
        self.authorizations: list[str | None] = []  # the Authorization header of every request, in arrival order
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                with server.lock:
                    server.authorizations.append(self.headers.get("Authorization"))
                if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}})
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path in server.moved:
                    self.send_response(301)
                    self.send_header("Location", server.moved[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path != "/v1/models":
                    return self._send(404, {"error": {"message": "not found"}})
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

            def do_POST(self):
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions" or body.get("model") not in server.models:
                    return self._send(404, {"error": {"message": f"The model '{body.get('model')}' does not exist"}})
                shown = _SHOWN.search(body["messages"][-1]["content"])
                question, a, b = shown.groups()
                with server.lock:
                    server.asked.append((question, a, b))
                reply = server.script(question, a, b)
                self._send(200, {"id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": reply}}]})

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RedirectServer(JudgeServer):
    """Every request is redirected (307: method and body kept) to the same path under `target`, another origin."""

    def __init__(self, target: str):
        super().__init__(lambda q, a, b: "")
        server = self

        class Redirect(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _redirect(self):
                with server.lock:
                    server.authorizations.append(self.headers.get("Authorization"))
                self.send_response(307)
                self.send_header("Location", target.rstrip("/") + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _redirect

        self.httpd.RequestHandlerClass = Redirect
