"""Chat transcripts that another tool already rendered into one text column, read back as turns.

Popular fine-tuning datasets ship conversations as text: Guanaco (`### Human: ...### Assistant: ...`, the QLoRA
tutorials' dataset), Anthropic HH-RLHF (`\\n\\nHuman: ...\\n\\nAssistant: ...`), Llama 2 tutorials' copies of it
(`<s>[INST] ... [/INST] ... </s>`), ChatML and Llama 3 renderings. Read as turns, stage=sft trains them in the
model's own chat template with the loss on the answers, instead of teaching the model another model's markup.

A text is a transcript only when it opens with a turn marker; a document that merely mentions one is left alone.
"""

from __future__ import annotations

import re

# (name for the log, turn marker with the speaker as its group): tried in order, the first that opens the text wins.
STYLES = (
    ("Guanaco's '### Human: / ### Assistant:'", re.compile(r"###\s*(Human|Assistant):[ \t]?")),
    ("HH-RLHF's 'Human: / Assistant:'", re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")),
    ("Llama 2's '[INST] ... [/INST]'", re.compile(r"\s*(?:<s>)?\s*\[(/?INST)\]\s*")),
    ("ChatML's '<|im_start|>'", re.compile(r"<\|im_start\|>(system|user|assistant)\s*\n")),
    ("Llama 3's '<|start_header_id|>'",
     re.compile(r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\s*")),
)
SPEAKERS = {"Human": "user", "INST": "user", "Assistant": "assistant", "/INST": "assistant",
            "system": "system", "user": "user", "assistant": "assistant"}
# Tokens a rendering puts around turns: the text before the first marker may hold only these, and they are cut from
# the ends of each turn.
_AROUND = r"\s|<s>|</s>|<\|begin_of_text\|>|<\|im_end\|>|<\|eot_id\|>|<\|end_of_text\|>|<\|endoftext\|>"
MARKUP = re.compile(rf"^(?:{_AROUND})+|(?:{_AROUND})+$")
LLAMA2_SYSTEM = re.compile(r"^<<SYS>>\s*(.*?)\s*<</SYS>>\s*", re.DOTALL)


def read_transcript(text: str) -> tuple[str, list[dict[str, str]]] | None:
    """(style name, [{role, content}, ...]) when `text` is a rendered chat, else None. A last question without its
    answer is left out; the other turns are not checked here (the caller's conversation rules name what is wrong)."""
    for name, marker in STYLES:
        parts = marker.split(text)  # [before, speaker, text, speaker, text, ...]
        if len(parts) < 5 or MARKUP.sub("", parts[0]):
            continue
        turns = [{"role": SPEAKERS[who], "content": MARKUP.sub("", said)}
                 for who, said in zip(parts[1::2], parts[2::2], strict=True)]
        if turns[-1]["role"] == "user":  # a question left unanswered (openassistant-guanaco's first row): nothing
            turns.pop()                  # to learn from it
        system = LLAMA2_SYSTEM.match(turns[0]["content"]) if turns[0]["role"] == "user" else None
        if system:  # Llama 2 puts the system prompt inside the first user turn
            turns[0]["content"] = turns[0]["content"][system.end():]
            turns.insert(0, {"role": "system", "content": system.group(1)})
        return name, turns
    return None
