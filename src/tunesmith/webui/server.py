"""The HTTP server of the Web UI: the Gradio page mounted on a FastAPI app whose outermost layer is the `Guard`
(security.py), run by uvicorn in a thread (tunesmith/webserver.py).

Why not `Blocks.launch()`: it builds its own app, and middleware added to that app sits inside Gradio's CORS layer,
which answers cross-origin preflights itself. Mounting puts the Guard in front of every route instead.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from tunesmith.webui.security import Gate, Guard
from tunesmith.webui.views import CSS


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

