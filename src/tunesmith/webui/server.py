"""The HTTP server of the Web UI: the Gradio page mounted on a FastAPI app whose outermost layer is the `Guard`
(security.py), run by uvicorn in a thread.

Why not `Blocks.launch()`: it builds its own app, and middleware added to that app sits inside Gradio's CORS layer,
which answers cross-origin preflights itself. Mounting puts the Guard in front of every route instead.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from tunesmith.errors import TunesmithError
from tunesmith.webui.security import Gate, Guard
from tunesmith.webui.views import CSS

START_TIMEOUT_S = 60.0


class WebServer:
    """uvicorn in a thread (it leaves signals alone there): Ctrl-C reaches the main thread, which stops it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread):
        self.server, self.thread = server, thread

    def wait(self) -> None:
        """Until the server stops (Ctrl-C arrives in the caller as KeyboardInterrupt)."""
        while self.thread.is_alive():
            self.thread.join(0.5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def bind(host: str, port: int) -> socket.socket:
    """Bind first, before the page is built or uvicorn runs: a port in use is one clear line, at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        raise TunesmithError(f"webui: cannot listen on {host}:{port} (in use?); pick another with --port") from None
    sock.listen(128)
    sock.set_inheritable(False)  # the CLI jobs started from the page must not hold the port
    return sock


def build_server_app(demo: gr.Blocks, gate: Gate, allowed_paths: list[Path], blocked_paths: list[Path]) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # A parent CORSMiddleware makes Gradio leave CORS to it; it allows no other origin to read a response.
    app.add_middleware(CORSMiddleware, allow_origins=[])
    app.add_middleware(Guard, gate=gate)  # added last: the outermost layer, before CORS and every route
    gr.mount_gradio_app(app, demo.queue(), path="/", css=CSS, ssr_mode=False, show_error=False,
                        auth_dependency=gate.user_of_request if gate.credentials else None,
                        allowed_paths=[str(p) for p in allowed_paths], blocked_paths=[str(p) for p in blocked_paths])
    # Gradio checks the files handed to handlers (uploads) only in an app marked as launched; a mounted one is not.
    demo.has_launched = True
    return app


def start(app: FastAPI, sock: socket.socket) -> WebServer:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise TunesmithError("webui: the web server did not start; run with -v to see why")
        time.sleep(0.05)
    return WebServer(server, thread)
