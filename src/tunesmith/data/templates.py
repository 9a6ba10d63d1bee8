"""Prompt templates: one description per template (`ChatFormat`, data/chat_format.py), from which the Jinja chat
template, the end-of-answer token and the Ollama Modelfile TEMPLATE are all derived.

A `Template` is the one object that turns a conversation into text for training, chat and serving: training
writes its Jinja into the run's tokenizer (`chat_template`), so everything that loads the run later renders prompts
exactly as the model saw them. Masks come from rendering the conversation turn by turn: the text an assistant
turn adds is the answer (trainable), everything else is prompt. Templates that rewrite earlier turns once the
conversation goes on (Qwen3 drops the empty think block from past answers, Phi-3 closes with EOS, Mistral moves
the system prompt to the last user turn) are encoded as the whole conversation renders: the last answer's prompt
is exactly the prompt chat will send, earlier answers sit where later turns see them.

Named templates live in `FORMATS` (adding one is one entry). `template=auto` keeps the tokenizer's own Jinja; when
that Jinja behaves exactly like a known format on probe conversations (`recognize`), its description supplies the
end-of-turn token (a Qwen2.5 or Llama-3 *base* model ends answers with `<|im_end|>` / `<|eot_id|>`, not with its
EOS, or chat would never stop) and the Modelfile. A tokenizer without a chat template (a base model) gets the
named template whose end-of-turn token its vocabulary holds, else alpaca; the log says which and why.

Qwen3's thinking switch is two names: `qwen3` is Qwen3's own template (thinking on: chat opens the answer with
`<|im_start|>assistant\\n` and the model decides whether to think), `qwen3_nothink` is its `enable_thinking=False`
(chat opens the answer with the empty `<think>\\n\\n</think>\\n\\n` block, so it answers directly). Rows without
reasoning train the answer after that empty block, as Qwen3's template renders them; under `qwen3` the block is
part of the trained answer (the model learns when not to think), under `qwen3_nothink` part of the prompt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace

from tunesmith.data.chat_format import BOS, EOS, FIRST_USER, LAST_USER, ChatFormat, wrap
from tunesmith.errors import ConfigError, first_line

__all__ = ["ALPACA_SYSTEM", "FORMATS", "ChatFormat", "Template", "get_template", "recognize"]
log = logging.getLogger(__name__)

ALPACA_SYSTEM = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
THINK_OFF = "<think>\n\n</think>\n\n"  # Qwen3's empty reasoning block
PROBES = (  # (conversation, add_generation_prompt)
    ([{"role": "user", "content": "Q1"}], True),
    ([{"role": "system", "content": "S1"}, {"role": "user", "content": "Q1"}], True),
    ([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
     True),
    ([{"role": "system", "content": "S1"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
      {"role": "user", "content": "Q2"}], True),
    ([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}], False),  # how a final answer ends
)
CHATML = wrap("<|im_start|>{role}\n", "<|im_end|>\n")
GEMMA = {"system": ("", "\n\n"), "user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
         "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")}

FORMATS: dict[str, ChatFormat] = {
    # The seed recipe's prompt: system line, "### Instruction:", "### Response:", answer + EOS.
    "alpaca": ChatFormat("alpaca", {"system": ("", "\n\n"), "user": ("### Instruction:\n", "\n\n### Response:\n"),
                                    "assistant": ("", EOS + "\n\n")}, system=ALPACA_SYSTEM,
                         extra_stops=("### Instruction:",)),
    # KoAlpaca (Polyglot-ko): "### 질문: ...", "### 답변: ...", answer + EOS; no system prompt of its own.
    "koalpaca": ChatFormat("koalpaca", {"system": ("", "\n\n"), "user": ("### 질문: ", "\n\n### 답변: "),
                                        "assistant": ("", EOS + "\n\n")}, extra_stops=("### 질문:",)),
    "chatml": ChatFormat("chatml", CHATML, "<|im_start|>assistant\n", stop="<|im_end|>"),  # Qwen2/2.5, SmolLM
    "qwen3": ChatFormat("qwen3", CHATML, "<|im_start|>assistant\n", stop="<|im_end|>", answer_prefix=THINK_OFF),
    "qwen3_nothink": ChatFormat("qwen3_nothink", CHATML, "<|im_start|>assistant\n" + THINK_OFF, stop="<|im_end|>",
                                answer_prefix=THINK_OFF),
    "llama3": ChatFormat("llama3", wrap("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>"),
                         "<|start_header_id|>assistant<|end_header_id|>\n\n", bos=BOS, stop="<|eot_id|>", trim=True),
    # Gemma 2 and 3: "model" turns; a system prompt opens the first user turn (Gemma 2's own template refuses one).
    "gemma": ChatFormat("gemma", GEMMA, "<start_of_turn>model\n", bos=BOS, stop="<end_of_turn>", trim=True,
                        system_in=FIRST_USER),
    "phi3": ChatFormat("phi3", wrap("<|{role}|>\n", "<|end|>\n"), "<|assistant|>\n", stop="<|end|>", end=EOS),
    # Mistral (v0.3 / Nemo / tekken spelling): [INST]...[/INST] answer EOS; the system prompt opens the last user turn.
    "mistral": ChatFormat("mistral", {"system": ("", "\n\n"), "user": ("[INST]", "[/INST]"), "assistant": ("", EOS)},
                          bos=BOS, system_in=LAST_USER),
    # Zephyr (TinyLlama-1.1B-Chat, zephyr-7b, StableLM Zephyr): <|role|> lines as plain text, every turn ended by EOS.
    "zephyr": ChatFormat("zephyr", wrap("<|{role}|>\n", EOS + "\n"), "<|assistant|>\n"),
    # EXAONE 4.0 as its template runs by default (reasoning off): every answer, past ones too, follows an empty
    # think block, which is prompt; [|endofturn|] (its EOS) ends every turn.
    "exaone4": ChatFormat("exaone4", {**wrap("[|{role}|]\n", "[|endofturn|]\n"),
                                      "assistant": ("[|assistant|]\n" + THINK_OFF, "[|endofturn|]\n")},
                          "[|assistant|]\n" + THINK_OFF, stop="[|endofturn|]"),
}


class _Rewritten(Exception):
    """The template renders an earlier turn differently once the conversation goes on."""


@dataclass
class Template:
    name: str
    chat_template: str  # Jinja
    stop: str  # the token that ends an answer (the EOS the model learns to emit)
    format: ChatFormat | None = field(default=None, compare=False)  # the description, resolved, when known

    def render(self, tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def apply_to(self, tokenizer) -> None:
        """Make `tokenizer` carry this template and end-of-turn token, as a run saves it: chat and serve then render
        prompts exactly as training did and stop where the answers ended."""
        tokenizer.chat_template = self.chat_template
        if self.stop != tokenizer.eos_token:
            tokenizer.eos_token = self.stop

    def segments(self, tokenizer, messages: list[dict[str, str]], system: str | None) -> list[tuple[str, bool]]:
        """Split a rendered conversation into (text, is_answer) pieces; an answer piece is content + stop token."""
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        try:
            try:
                pieces = self._turn_by_turn(tokenizer, messages)
            except _Rewritten:
                pieces = self._whole(tokenizer, messages)
        except ConfigError:
            raise
        # The template's own raise_exception (e.g. Gemma 2 refuses system prompts).
        except Exception as e:  # noqa: BLE001
            first = first_line(e, 160)
            raise ConfigError(f"template '{self.name}' cannot render this conversation ({first}); choose a named "
                              "template (template=gemma, chatml, ...) or change the rows") from None
        return [(text, trainable) for text, trainable in pieces if text]

    def _answer(self, turn: str, content: str) -> tuple[str, str]:
        """(text before the answer, text after it) within `turn`; the stop token after the answer is the answer's."""
        at = turn.find(content)
        if at < 0:
            raise ConfigError(f"template '{self.name}' changes the answer text; choose template=chatml")
        after = turn[at + len(content):]
        if after.lstrip().startswith(self.stop):  # the template ends the turn with the stop token itself
            after = after.lstrip()[len(self.stop):]
        return turn[:at], after

    def _turn_by_turn(self, tokenizer, messages) -> list[tuple[str, bool]]:
        pieces: list[tuple[str, bool]] = []
        done = ""
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prefix = self.render(tokenizer, messages[:k], add_generation_prompt=True)
            full = self.render(tokenizer, messages[: k + 1])
            if not (full.startswith(prefix) and prefix.startswith(done)):
                raise _Rewritten
            content = message["content"].strip()
            before, after = self._answer(full[len(prefix):], content)
            # What the template writes between the chat prompt and the answer (Qwen3's empty think block) is the
            # model's to write when it chats: trained with the answer.
            pieces += [(prefix[len(done):], False), (before + content + self.stop, _trained(message)), (after, False)]
            done = full
        return pieces

    def _whole(self, tokenizer, messages) -> list[tuple[str, bool]]:
        """The conversation as it renders whole; each answer found after the prompt text it shares with its own
        turn's prompt, the last one exactly after the prompt chat will send."""
        full = self.render(tokenizer, messages)
        answers = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
        last_prompt = self.render(tokenizer, messages[:answers[-1]], add_generation_prompt=True)
        if not full.startswith(last_prompt):
            raise ConfigError(f"template '{self.name}' renders an answer's prompt differently once the answer is "
                              "there (Mistral's own template drops the system prompt); choose a named template: "
                              f"template={', '.join(n for n in FORMATS)}")
        pieces: list[tuple[str, bool]] = []
        cursor = 0
        for k in answers:
            prompt = last_prompt if k == answers[-1] else self.render(tokenizer, messages[:k], True)
            start = max(cursor, len(os.path.commonprefix([prompt, full])))
            content = messages[k]["content"].strip()
            before, after = self._answer(full[start:], content)
            if k == answers[-1]:  # after the exact chat prompt: as in _turn_by_turn
                pieces += [(full[cursor:start], False), (before + content + self.stop, _trained(messages[k]))]
            else:
                pieces += [(full[cursor:start] + before, False), (content + self.stop, _trained(messages[k]))]
            cursor = len(full) - len(after) if k == answers[-1] else start + len(before) + len(content)
            if k != answers[-1]:  # skip the stop token the template wrote after this answer
                rest = full[cursor:]
                if rest.lstrip().startswith(self.stop):
                    cursor += len(rest) - len(rest.lstrip()) + len(self.stop)
        return pieces + [(full[cursor:], False)]


def _trained(message: dict) -> bool:
    """Is this answer in the loss? All are, but one its row marks with a zero loss weight (LLaMA-Factory v1)."""
    return message.get("train", True)


def _is_token(tokenizer, text: str) -> bool:
    return bool(text) and tokenizer.convert_tokens_to_ids(text) not in (None, tokenizer.unk_token_id)


def _for_base_model(tokenizer) -> str:
    """The named template for a tokenizer without a chat template: the first whose end-of-turn token is one of the
    vocabulary's special tokens (a Llama 3 or Qwen base has them), else alpaca; logged with the reason."""
    special = set(getattr(tokenizer, "all_special_tokens", [])) | {
        t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    fitting = {}  # name -> how many of the vocabulary's special tokens the template writes (the most specific wins)
    for name, fmt in FORMATS.items():
        stop = fmt.stop  # a literal end-of-turn token, not the {eos} placeholder every vocabulary resolves
        if EOS not in stop and stop in special and _is_token(tokenizer, stop):
            text = "".join(a + b for a, b in fmt.roles.values()) + fmt.generation + fmt.answer_prefix + stop
            fitting[name] = sum(token in text for token in special)
    if fitting:
        name = max(fitting, key=fitting.get)
        log.info("template=auto: the tokenizer has no chat template (a base model); using template=%s, whose "
                 "end-of-turn token %s is in its vocabulary (set template= to choose another)", name,
                 FORMATS[name].stop)
        return name
    log.info("template=auto: the tokenizer has no chat template (a base model) and no known end-of-turn token; "
             "using template=alpaca, answers ending with EOS %s (set template= to choose another, e.g. koalpaca)",
             tokenizer.eos_token)
    return "alpaca"


def get_template(name: str, tokenizer) -> Template:
    """`auto` = the tokenizer's own chat template (a named one for a base model); else a named template."""
    eos = tokenizer.eos_token
    if name == "auto":
        if getattr(tokenizer, "chat_template", None):
            fmt = recognize(tokenizer)
            stop = fmt.stop if fmt is not None and _is_token(tokenizer, fmt.stop) else eos
            return Template("auto", tokenizer.chat_template, stop, fmt)
        name = _for_base_model(tokenizer)
    if name not in FORMATS:
        raise ConfigError(f"config: template={name!r} is not known; choose auto, {', '.join(FORMATS)}")
    fmt = FORMATS[name].resolved(tokenizer)
    # A named end-of-turn token only works if the vocabulary has it as one token; otherwise EOS ends the answer.
    return Template(name, FORMATS[name].jinja(), fmt.stop if _is_token(tokenizer, fmt.stop) else eos, fmt)


def recognize(tokenizer, chat_template: str | None = None) -> ChatFormat | None:
    """The known format whose rendering equals the tokenizer's chat template on every probe conversation, resolved;
    None when none does. The format may carry the default system prompt the template inserts by itself, or text it
    always writes before the system prompt (Llama 3.1's date preamble). Probes with a system message that the
    template refuses (Gemma 2) are left out: such a template has no system prompt to compare."""
    jinja = chat_template or tokenizer.chat_template
    if not jinja:
        return None
    expected = []
    for messages, opening in PROBES:
        try:
            expected.append(tokenizer.apply_chat_template(messages, chat_template=jinja, tokenize=False,
                                                          add_generation_prompt=opening))
        except Exception:  # noqa: BLE001 - a template that cannot render this probe (strict role checks, tools only)
            if messages[0]["role"] != "system":
                return None
            expected.append(None)
    for fmt in FORMATS.values():
        for candidate in _system_variants(fmt.resolved(tokenizer), expected):
            if all(e is None or candidate.render(p, opening) == e for (p, opening), e in zip(PROBES, expected)):
                return candidate
    return None


def _system_variants(fmt: ChatFormat, expected: list[str | None]) -> list[ChatFormat]:
    """The format as it is, with no default system prompt; with the default its Jinja wrote into a conversation that
    had none (SmolLM2's 'You are a helpful AI assistant named SmolLM...', Qwen2.5's 'You are Qwen...'); and with a
    preamble written before every system prompt (found in the probe that has one)."""
    bare = replace(fmt, system=None)
    variants = [bare]
    default = _between_system_markers(replace(fmt, system="\x00"), PROBES[0], expected[0])
    if default is not None:
        variants.append(replace(fmt, system=default))
    given = _between_system_markers(replace(fmt, system=None), PROBES[1], expected[1])
    if given is not None and given.endswith("S1") and len(given) > 2:
        before, after = fmt.roles["system"]
        preamble = given[:-2]
        roles = {**fmt.roles, "system": (before + preamble, after)}
        rest = default[len(preamble):] if default is not None and default.startswith(preamble) else None
        variants.append(replace(fmt, roles=roles, system=rest))
    return variants


def _between_system_markers(fmt: ChatFormat, probe, rendered: str | None) -> str | None:
    """What the template wrote where `fmt` writes the system text (a sentinel marks the place), or None."""
    if rendered is None:
        return None
    messages, opening = probe
    if messages[0]["role"] == "system":
        messages = [{"role": "system", "content": "\x00"}, *messages[1:]]
    head, sentinel, tail = fmt.render(messages, opening).partition("\x00")
    if not sentinel or not (rendered.startswith(head) and rendered.endswith(tail)) \
            or len(rendered) < len(head) + len(tail):
        return None
    return rendered[len(head):len(rendered) - len(tail)]
