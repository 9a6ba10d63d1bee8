"""`tunesmith chat`: talk to a run, checkpoint, export or base model in the terminal.

Interactive by default (multi-turn, streaming; /reset, /system TEXT, /exit); `--prompt "..."` answers once and prints
only the answer, for scripts. Prompts go through the model's training template, like the server's.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tunesmith.infer.engine import Request, SamplingParams
from tunesmith.infer.loading import LoadedModel

HELP = "commands: /reset (new conversation), /system TEXT (set the system prompt), /exit"


class ChatSession:
    def __init__(self, model: LoadedModel, params: SamplingParams, system: str | None = None):
        self.model, self.params, self.system = model, params, system
        self.history: list[dict[str, str]] = []

    def reset(self) -> None:
        self.history = []

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def ask(self, text: str, on_text=None) -> str:
        self.history.append({"role": "user", "content": text})
        ids = self.model.encode_chat(self.messages())
        request = Request(ids, self.params, on_text)
        self.model.activate()
        self.model.engine.generate([request])
        self.history.append({"role": "assistant", "content": request.text})
        return request.text


def run_chat(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
             stderr: TextIO = sys.stderr) -> None:
    interactive = stdin.isatty()
    print(f"chatting with {session.model.name}; {HELP}", file=stderr)
    while True:
        if interactive:
            print("you> ", end="", file=stderr, flush=True)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            print("(conversation reset)", file=stderr)
            continue
        if text.startswith("/system"):
            session.system = text[len("/system"):].strip() or None
            session.reset()
            print(f"(system prompt {'set' if session.system else 'cleared'}; conversation reset)", file=stderr)
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]}; {HELP}", file=stderr)
            continue
        print("assistant> ", end="", file=stderr, flush=True)
        session.ask(text, on_text=lambda piece: print(piece, end="", file=stdout, flush=True))
        print(file=stdout, flush=True)
