"""stage=sft: supervised fine-tuning on conversations; loss on the answers (and prompts with train_on_prompt)."""

from __future__ import annotations

import logging

from tunesmith.data.dataset import encode_conversation, encode_items
from tunesmith.data.formats import Conversation, Document
from tunesmith.data.packing import MicroBatch, pack_step
from tunesmith.once import log_once
from tunesmith.stages.base import Item, LossOutput, PreviewExample, Stage, causal_lm_loss

log = logging.getLogger("tunesmith")
ANSWER = "answer"


class SFTStage(Stage):
    name = "sft"
    description = "supervised fine-tuning on conversations"
    rows = Conversation

    def adopt(self, item: Item) -> Item:
        read = item.as_conversation() if isinstance(item, Document) else None
        if read is None:
            return item
        style, conversation = read
        log_once(log, f"text rows read as {style} chats: trained in the model's chat template, loss on the answers "
                      "(stage=pt would train on the text as it is)")
        return conversation

    def mismatch(self, item: Item) -> str:
        if isinstance(item, Document):
            return (f"raw text rows need stage=pt; for stage={self.name} use instruction/output, conversations or "
                    "messages rows, or chats rendered as text ('### Human: ... ### Assistant: ...', ChatML, ...)")
        return (f"this is a preference row (chosen/rejected), which stage={self.name} cannot learn from; use "
                "stage=dpo or stage=rm, or for stage=sft give an output/answer column (e.g. columns={output: chosen})")

    def encode(self, items: list[Item], template, tokenizer, split: str) -> list:
        return encode_items(self.checked(items), template, tokenizer, self.cutoff_len, self.train_on_prompt,
                            split)

    def batches(self, examples: list, token_budget: int, packed: bool = True) -> list[MicroBatch]:
        return pack_step(examples, token_budget, packed)

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        return causal_lm_loss(model, batch)

    def preview(self, item: Item, template, tokenizer) -> list[PreviewExample]:
        return [_conversation_preview(item, template, tokenizer, self.cutoff_len, self.train_on_prompt, ANSWER)]


def _conversation_preview(conv: Conversation, template, tokenizer, cutoff_len: int, train_on_prompt: bool,
                          kind: str) -> PreviewExample:
    example = encode_conversation(conv, template, tokenizer, cutoff_len, train_on_prompt)
    text = template.render(tokenizer, conv.messages) if example is None else ""
    return PreviewExample(example, kind, text)
