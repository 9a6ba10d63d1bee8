"""A real OpenAI-compatible judge for tests: an http.server in a thread answering GET /v1/models and
POST /v1/chat/completions. Its reply is scripted from the question and the two answers it was shown, and it records
every request, so a test can check what the judge was asked."""

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
    def __init__(self, script: Script, models: tuple[str, ...] = ("judge-1",), key: str | None = None):
        self.script, self.models, self.key = script, models, key
        self.asked: list[tuple[str, str, str]] = []  # (question, A, B) of every chat request, in arrival order
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
                if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}})
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
