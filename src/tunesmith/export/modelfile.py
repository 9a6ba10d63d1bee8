"""An Ollama `Modelfile` beside the GGUF: FROM the file, TEMPLATE = the training template in Go template syntax,
SYSTEM = the default system prompt the template inserts, PARAMETER stop = the end-of-answer token.

The template comes from its description (`data.templates.ChatFormat`): the run's tokenizer carries the training
template's Jinja, and `recognize` finds the description that renders exactly like it on probe conversations (a
named template always does: its Jinja is derived from the description; a tokenizer's own ChatML- or Llama-3-style
template does too). `ChatFormat.go_template` then writes what Ollama renders. When nothing matches, no TEMPLATE is
written and Ollama falls back to the GGUF's chat template.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tunesmith.data.templates import ChatFormat, recognize

log = logging.getLogger(__name__)


def translate(tokenizer) -> ChatFormat | None:
    """The training template (saved in the run's tokenizer) as a resolved ChatFormat, or None."""
    fmt = recognize(tokenizer)
    if fmt is None:
        log.warning("the training template matches no known format; the Modelfile leaves TEMPLATE to Ollama's "
                    "reading of the GGUF")
    return fmt


def stop_texts(fmt: ChatFormat, tokenizer) -> list[str]:
    """The token the run taught the model to end answers with first; the format's markers where they are tokens
    (or plain text markers such as alpaca's '### Instruction:')."""
    vocab = tokenizer.get_vocab()
    stops = [tokenizer.eos_token] + ([fmt.stop] if fmt.stop in vocab else []) + list(fmt.extra_stops)
    return list(dict.fromkeys(s for s in stops if s))


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
    stops = stop_texts(fmt, tokenizer) if fmt is not None else [tokenizer.eos_token] if tokenizer.eos_token else []
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
