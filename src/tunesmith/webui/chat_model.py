"""The model the Chat tab talks to, loaded in the Web UI process with the same functions as `tunesmith chat`
(`load_for_inference`, `ChatSession`); one model at a time, shared by the page's sessions."""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Iterator

from tunesmith.infer.engine import SamplingParams


class ChatModel:
    def __init__(self):
        self.loaded = None  # tunesmith.infer.loading.LoadedModel
        self.spec: str | None = None
        self._lock = threading.Lock()  # one generation at a time: the engine decodes one batch

    def load(self, spec: str | None) -> str:
        """Load a run, checkpoint, export, .gguf, hub id, or the embedded base (None / "base"); returns its name."""
        from tunesmith.infer.loading import load_for_inference

        spec = None if spec in (None, "", "base") else spec
        with self._lock:
            self._drop()
            self.loaded = load_for_inference(spec)
            self.spec = spec or "base"
            return self.loaded.name

    def unload(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self.loaded, self.spec = None, None
        gc.collect()

    def stream(self, history: list[dict[str, str]], message: str, system: str | None,
               params: SamplingParams) -> Iterator[str]:
        """Yield the answer to `message` as it grows. `history` holds the earlier user/assistant turns."""
        from tunesmith.infer.chat import ChatSession

        pieces: queue.Queue = queue.Queue()
        failure: list[BaseException] = []
        done = object()

        def generate() -> None:
            try:
                with self._lock:
                    if self.loaded is None:
                        raise RuntimeError("no model loaded")
                    session = ChatSession(self.loaded, params, system or None)
                    session.history = list(history)
                    session.ask(message, on_text=pieces.put)
            except BaseException as e:  # handed to the page as one line, never a traceback
                failure.append(e)
            finally:
                pieces.put(done)

        threading.Thread(target=generate, daemon=True).start()
        answer = ""
        while (piece := pieces.get()) is not done:
            answer += piece
            yield answer
        if failure:
            raise failure[0]
