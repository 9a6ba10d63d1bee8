"""An Ollama `Modelfile` beside the GGUF: FROM the file, TEMPLATE = the training template in Go template syntax,
SYSTEM = the default system prompt the template inserts, PARAMETER stop = the end-of-answer token.

A chat template is translated only when it is one whose shape is known - the named templates (chatml, alpaca,
llama3) and a tokenizer's own ChatML-style template (SmolLM2, Qwen2) - into a `ChatFormat`: the text before and after
each message by role, the generation prompt, the default system prompt. `ChatFormat.render` mirrors exactly what the
emitted Go template produces in Ollama (which passes system messages inside .Messages and prepends the Modelfile's
SYSTEM when a chat has none). The translation is then checked by rendering probe conversations both ways; if the
Jinja template renders anything else, no TEMPLATE is written and Ollama falls back to the GGUF's chat template.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.templates import ALPACA, ALPACA_SYSTEM, LLAMA3

log = logging.getLogger(__name__)
PROBES = (
    [{"role": "user", "content": "Q1"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "Q1"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
     {"role": "user", "content": "Q2"}],
)


@dataclass
class ChatFormat:
    name: str
    roles: dict[str, tuple[str, str]]  # system/user/assistant -> (text before, text after the content)
    generation: str  # what opens the assistant's answer after the last message
    system: str | None = None  # default system prompt the template inserts when a chat has none
    bos: str = ""  # text the template writes first (a BOS written as text)
    stop: list[str] = field(default_factory=list)

    def render(self, messages: list[dict[str, str]]) -> str:
        """What Ollama feeds the model for `messages`, given the emitted TEMPLATE and SYSTEM."""
        if self.system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.system}, *messages]
        text = self.bos
        for m in messages:
            before, after = self.roles.get(m["role"], self.roles["assistant"])
            text += before + m["content"] + after
        return text + self.generation

    def go_template(self, runtime_adds_bos: bool) -> str:
        (s0, s1), (u0, u1), (a0, a1) = (self.roles[r] for r in ("system", "user", "assistant"))
        bos = "" if runtime_adds_bos else self.bos  # llama.cpp adds BOS itself when the GGUF says add_bos_token
        return (f'{bos}{{{{ range .Messages }}}}{{{{ if eq .Role "system" }}}}{s0}{{{{ .Content }}}}{s1}'
                f'{{{{ else if eq .Role "user" }}}}{u0}{{{{ .Content }}}}{u1}'
                f'{{{{ else }}}}{a0}{{{{ .Content }}}}{a1}{{{{ end }}}}{{{{ end }}}}{self.generation}')


def _default_chatml_system(tokenizer, template: str) -> str | None:
    """The system prompt a ChatML-style template inserts by itself (SmolLM2's 'You are a helpful AI assistant...')."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Q1"}], chat_template=template,
                                         tokenize=False, add_generation_prompt=True)
    head = text.split("<|im_start|>user\n", 1)[0]
    m = re.fullmatch(r"<\|im_start\|>system\n(.*)<\|im_end\|>\n", head, flags=re.DOTALL)
    return m.group(1) if m else None


def translate(tokenizer) -> ChatFormat | None:
    """The training template (saved in the run's tokenizer) as a ChatFormat, or None when it cannot be expressed."""
    template = tokenizer.chat_template or ""
    eos = tokenizer.eos_token or ""
    if template == ALPACA:
        both = ("", "\n\n")
        fmt = ChatFormat("alpaca", {"system": both, "user": ("### Instruction:\n", "\n\n### Response:\n"),
                                    "assistant": ("", eos + "\n\n")}, "", ALPACA_SYSTEM, stop=["### Instruction:"])
    elif template == LLAMA3:
        wrap = {r: (f"<|start_header_id|>{r}<|end_header_id|>\n\n", "<|eot_id|>")
                for r in ("system", "user", "assistant")}
        fmt = ChatFormat("llama3", wrap, "<|start_header_id|>assistant<|end_header_id|>\n\n",
                         bos=tokenizer.bos_token or "", stop=["<|eot_id|>"])
    elif "<|im_start|>" in template:
        wrap = {r: (f"<|im_start|>{r}\n", "<|im_end|>\n") for r in ("system", "user", "assistant")}
        fmt = ChatFormat("chatml", wrap, "<|im_start|>assistant\n", _default_chatml_system(tokenizer, template),
                         stop=["<|im_end|>"])
    else:
        return None
    # The token the run taught the model to end answers with comes first; format markers only when they are tokens.
    vocab = tokenizer.get_vocab()
    fmt.stop = list(dict.fromkeys([eos] + [s for s in fmt.stop if s in vocab or fmt.name == "alpaca"]))
    for probe in PROBES:
        expected = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        if fmt.render(probe) != expected:
            log.warning("the training template (%s-like) renders %r where the Modelfile would give %r; the Modelfile "
                        "leaves TEMPLATE to Ollama's reading of the GGUF", fmt.name, expected[:80],
                        fmt.render(probe)[:80])
            return None
    return fmt


def modelfile_text(gguf_name: str, tokenizer, runtime_adds_bos: bool) -> tuple[str, ChatFormat | None]:
    fmt = translate(tokenizer)
    lines = ["# Ollama Modelfile written by `tunesmith export`.",
             f"# ollama create {Path(gguf_name).stem.split('.')[0]} -f Modelfile",
             f"FROM ./{gguf_name}"]
    literal = "" if fmt is None else "".join(a + b for a, b in fmt.roles.values()) + fmt.generation + fmt.bos
    if fmt is not None and ("{{" in literal or '"""' in literal + (fmt.system or "")):
        fmt = None  # text that Go templates or Modelfile quoting cannot carry: let Ollama read the GGUF instead
    if fmt is not None:
        lines.append(f'TEMPLATE """{fmt.go_template(runtime_adds_bos)}"""')
        if fmt.system is not None:
            lines.append(f'SYSTEM """{fmt.system}"""')
    stops = fmt.stop if fmt is not None else [tokenizer.eos_token] if tokenizer.eos_token else []
    lines += [f'PARAMETER stop "{s}"' for s in stops if '"' not in s]
    return "\n".join(lines) + "\n", fmt


def write_modelfile(out: Path, gguf_name: str, tokenizer, runtime_adds_bos: bool) -> Path:
    text, fmt = modelfile_text(gguf_name, tokenizer, runtime_adds_bos)
    if fmt is None:
        log.warning("Modelfile: no TEMPLATE written (template not translatable); Ollama will use the GGUF's "
                    "tokenizer.chat_template")
    path = out / "Modelfile"
    path.write_text(text, encoding="utf-8")
    return path
