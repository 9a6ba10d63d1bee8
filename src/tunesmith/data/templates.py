"""Prompt templates, as Jinja chat templates.

A `Template` is the one object that turns a conversation into text for training, chat and serving: training
writes it into the run's tokenizer (`chat_template`), so everything that loads the run later renders prompts
exactly as the model saw them. Masks come from rendering the conversation turn by turn: the text an assistant
turn adds is the answer (trainable), everything else is prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.errors import ConfigError

ALPACA_SYSTEM = "Below is an instruction that describes a task. Write a response that appropriately completes the request."

# The seed recipe's prompt: system line, "### Instruction:", "### Response:", answer + EOS.
ALPACA = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '" + ALPACA_SYSTEM + "' %}{% endif %}"
    "{{ system + '\\n\\n' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n### Response:\\n' }}"
    "{% else %}{{ message['content'] + eos_token + '\\n\\n' }}{% endif %}"
    "{% endfor %}"
)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

NAMED = {"alpaca": (ALPACA, None), "chatml": (CHATML, "<|im_end|>"), "llama3": (LLAMA3, "<|eot_id|>")}


@dataclass
class Template:
    name: str
    chat_template: str
    stop: str  # the token that ends an answer (the EOS the model learns to emit)

    def render(self, tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def segments(self, tokenizer, messages: list[dict[str, str]], system: str | None) -> list[tuple[str, bool]]:
        """Split a rendered conversation into (text, is_answer) pieces; an answer piece is content + stop token."""
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        pieces: list[tuple[str, bool]] = []
        done = ""
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prefix = self.render(tokenizer, messages[:k], add_generation_prompt=True)
            full = self.render(tokenizer, messages[: k + 1])
            if not (prefix.startswith(done) and full.startswith(prefix)):
                raise ConfigError(f"template '{self.name}' does not render conversations turn by turn; "
                                  "choose template=chatml or template=alpaca")
            pieces.append((prefix[len(done):], False))
            turn = full[len(prefix):]
            content = message["content"].strip()
            at = turn.find(content)
            if at < 0:
                raise ConfigError(f"template '{self.name}' changes the answer text; choose template=chatml")
            after = turn[at + len(content):]
            if after.lstrip().startswith(self.stop):  # the template ends the turn with the stop token itself
                after = after.lstrip()[len(self.stop):]
            pieces.append((turn[:at], False))
            pieces.append((content + self.stop, True))
            pieces.append((after, False))
            done = full
        return [(text, trainable) for text, trainable in pieces if text]


def get_template(name: str, tokenizer) -> Template:
    """`auto` = the tokenizer's own chat template (alpaca when it has none); else a named template."""
    eos = tokenizer.eos_token
    if name == "auto":
        if getattr(tokenizer, "chat_template", None):
            return Template("auto", tokenizer.chat_template, eos)
        name = "alpaca"
    if name not in NAMED:
        raise ConfigError(f"config: template={name!r} is not known; choose auto, {', '.join(NAMED)}")
    text, stop = NAMED[name]
    # A named end-of-turn token only works if the vocabulary has it as one token; otherwise EOS ends the answer.
    if stop is None or tokenizer.convert_tokens_to_ids(stop) in (None, tokenizer.unk_token_id):
        stop = eos
    return Template(name, text, stop)
