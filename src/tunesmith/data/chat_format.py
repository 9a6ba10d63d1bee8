"""A chat template as data (`ChatFormat`): the text around each message by role, where the system prompt goes, what
opens the answer, and the token that ends it. One description gives the exact text (`render`), the Jinja chat
template saved into a run's tokenizer (`jinja`) and the Ollama Modelfile TEMPLATE (`go_template`), so the three can
never disagree. The named templates built from it live in `data.templates.FORMATS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

EOS, BOS = "{eos}", "{bos}"  # placeholders for the tokenizer's own special tokens
OWN, FIRST_USER, LAST_USER = "own", "first_user", "last_user"  # where the system prompt is written


@dataclass(frozen=True)
class ChatFormat:
    """`{eos}`/`{bos}` stand for the tokenizer's tokens. With `system_in` first_user / last_user the system text
    (wrapped in roles['system']) is written inside that user turn, after its opening text (Gemma 3: the first;
    Mistral: the last) instead of as a turn of its own."""

    name: str
    roles: dict[str, tuple[str, str]]  # system/user/assistant -> (text before, text after the content)
    generation: str = ""  # what opens the assistant's answer after the last message
    system: str | None = None  # default system prompt, used when a conversation has none
    bos: str = ""  # text written first
    stop: str = EOS  # the end-of-answer token the model learns to emit
    trim: bool = False  # content is stripped of surrounding whitespace
    extra_stops: tuple[str, ...] = ()  # text that also ends an answer at inference (Modelfile PARAMETER stop)
    system_in: str = OWN
    answer_prefix: str = ""  # written before a final answer (Qwen3's empty <think></think> block)
    end: str = ""  # written after the messages when no answer is opened (Phi-3's EOS)

    def resolved(self, tokenizer) -> ChatFormat:
        """The placeholders replaced by this tokenizer's EOS/BOS text."""
        sub = lambda t: t.replace(EOS, tokenizer.eos_token or "").replace(BOS, tokenizer.bos_token or "")
        return replace(self, roles={r: (sub(a), sub(b)) for r, (a, b) in self.roles.items()},
                       generation=sub(self.generation), bos=sub(self.bos), stop=sub(self.stop),
                       answer_prefix=sub(self.answer_prefix), end=sub(self.end))

    def _system_turn(self, messages: list[dict[str, str]]) -> int | None:
        """The index of the user message the system text goes into (None: a turn of its own, or no user turn)."""
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if self.system_in == OWN or not users:
            return None
        return users[0] if self.system_in == FIRST_USER else users[-1]

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Exactly what the Jinja from `jinja()` renders (for a resolved format)."""
        system = self.system
        if messages and messages[0]["role"] == "system":
            system, messages = messages[0]["content"], messages[1:]
        sys_before, sys_after = self.roles["system"]
        text = self.bos
        inside = self._system_turn(messages)
        if system is not None and self.system_in == OWN:
            text += sys_before + system + sys_after
        for i, m in enumerate(messages):
            before, after = self.roles[m["role"]]
            text += before
            if i == inside and system is not None:
                text += sys_before + system + sys_after
            if m["role"] == "assistant" and i == len(messages) - 1:
                text += self.answer_prefix
            text += (m["content"].strip() if self.trim else m["content"]) + after
        return text + (self.generation if add_generation_prompt else self.end)

    def jinja(self) -> str:
        system = "none" if self.system is None else _literal(self.system)
        content = "message['content'] | trim" if self.trim else "message['content']"
        sys_before, sys_after = self.roles["system"]
        wrapped_system = f"{{{{ {_expr(sys_before)} + system + {_expr(sys_after)} }}}}"
        inside = ""
        if self.system_in != OWN:
            pick = "ns.at < 0" if self.system_in == FIRST_USER else "true"
            inside = ("{% set ns = namespace(at=-1) %}{% for message in messages %}"
                      f"{{% if message['role'] == 'user' and {pick} %}}{{% set ns.at = loop.index0 %}}{{% endif %}}"
                      "{% endfor %}")
        branches = ""
        for i, (role, (before, after)) in enumerate((r, v) for r, v in self.roles.items() if r != "system"):
            keyword = "if" if i == 0 else "elif"
            branches += f"{{% {keyword} message['role'] == {_literal(role)} %}}{{{{ {_expr(before)} }}}}"
            if self.system_in != OWN and role == "user":
                branches += f"{{% if loop.index0 == ns.at and system is not none %}}{wrapped_system}{{% endif %}}"
            if self.answer_prefix and role == "assistant":
                branches += f"{{% if loop.last %}}{{{{ {_expr(self.answer_prefix)} }}}}{{% endif %}}"
            branches += f"{{{{ {content} + {_expr(after)} }}}}"
        opening = f"{{{{ {_expr(self.generation)} }}}}" if self.generation else ""
        closing = f"{{% else %}}{{{{ {_expr(self.end)} }}}}" if self.end else ""
        return (f"{{% if messages[0]['role'] == 'system' %}}{{% set system = messages[0]['content'] %}}"
                f"{{% set messages = messages[1:] %}}{{% else %}}{{% set system = {system} %}}{{% endif %}}"
                + (f"{{{{ {_expr(self.bos)} }}}}" if self.bos else "")
                + (f"{{% if system is not none %}}{wrapped_system}{{% endif %}}" if self.system_in == OWN else inside)
                + f"{{% for message in messages %}}{branches}{{% endif %}}{{% endfor %}}"
                + (f"{{% if add_generation_prompt %}}{opening}{closing}{{% endif %}}" if opening or closing else ""))

    def go_template(self, runtime_adds_bos: bool) -> str:
        """The Ollama Modelfile TEMPLATE (Go template syntax) for a resolved format. Ollama passes the conversation as
        .Messages (the Modelfile's SYSTEM first when a chat has no system message) and always opens an answer."""
        (s0, s1), (u0, u1), (a0, a1) = (self.roles[r] for r in ("system", "user", "assistant"))
        bos = "" if runtime_adds_bos else self.bos  # llama.cpp adds BOS itself when the GGUF says add_bos_token
        if self.system_in == OWN:
            # An always-written system block with an empty default (Llama 3.1's date preamble): written when the chat
            # has no system message, since Ollama sends no empty SYSTEM.
            head = ('{{ $sys := false }}{{ range .Messages }}{{ if eq .Role "system" }}{{ $sys = true }}{{ end }}'
                    f'{{{{ end }}}}{{{{ if not $sys }}}}{s0}{s1}{{{{ end }}}}') if self.system == "" else ""
            return (f'{bos}{head}{{{{ range .Messages }}}}{{{{ if eq .Role "system" }}}}{s0}{{{{ .Content }}}}{s1}'
                    f'{{{{ else if eq .Role "user" }}}}{u0}{{{{ .Content }}}}{u1}'
                    f'{{{{ else }}}}{a0}{{{{ .Content }}}}{a1}{{{{ end }}}}{{{{ end }}}}{self.generation}')
        # The system text goes inside the first or the last user turn: remember it, write it there.
        where = "(not $seen)" if self.system_in == FIRST_USER else "(eq (len (slice $.Messages $i)) 1)"
        return (f'{bos}{{{{ $sys := "" }}}}{{{{ $seen := false }}}}{{{{ range $i, $m := .Messages }}}}'
                f'{{{{ if eq .Role "system" }}}}{{{{ $sys = .Content }}}}'
                f'{{{{ else if eq .Role "user" }}}}{u0}{{{{ if and $sys {where} }}}}{s0}{{{{ $sys }}}}{s1}{{{{ end }}}}'
                f'{{{{ $seen = true }}}}{{{{ .Content }}}}{u1}'
                f'{{{{ else }}}}{a0}{{{{ .Content }}}}{a1}{{{{ end }}}}{{{{ end }}}}{self.generation}')


def _literal(text: str) -> str:
    return json.dumps(text)  # a valid Jinja string literal (Jinja reads \n, \" and \uXXXX escapes)


def _expr(text: str) -> str:
    """`text` as a Jinja expression, with the {eos}/{bos} placeholders as the tokenizer's variables."""
    parts: list[str] = []
    for i, chunk in enumerate(text.split(EOS)):
        if i:
            parts.append("eos_token")
        for j, piece in enumerate(chunk.split(BOS)):
            if j:
                parts.append("bos_token")
            if piece:
                parts.append(_literal(piece))
    return " + ".join(parts) or '""'


def wrap(before: str, after: str) -> dict[str, tuple[str, str]]:
    """The same markers around every role, `{role}` in `before` standing for the role's name."""
    return {r: (before.format(role=r), after) for r in ("system", "user", "assistant")}
