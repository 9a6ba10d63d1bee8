"""stage=pt: continued pretraining on raw text. Each document + EOS is cut into cutoff_len rows (each its own row in
a packed micro-batch, so attention never crosses a document boundary); the loss is on every token."""

from __future__ import annotations

from tunesmith.data.dataset import encode_documents
from tunesmith.data.formats import Document, Preference
from tunesmith.stages.base import Item, PreviewExample
from tunesmith.stages.sft import ANSWER, SFTStage


class PretrainStage(SFTStage):
    name = "pt"
    description = "continued pre-training on raw text"
    rows = Document
    keys = ("cutoff_len",)

    def adopt(self, item: Item) -> Item:
        return item  # text as it is, rendered chats included (sft reads those as conversations)

    def mismatch(self, item: Item) -> str:
        kind = ("preference rows go to stage=dpo or stage=rm" if isinstance(item, Preference)
                else "use stage=sft for conversations")
        return f"stage=pt trains on raw text; give rows with a 'text' column or .txt files ({kind})"

    def encode(self, items: list[Item], template, tokenizer, split: str) -> list:
        return encode_documents(self.checked(items), tokenizer, self.cutoff_len, split)

    def preview(self, item: Item, template, tokenizer) -> list[PreviewExample]:
        return [PreviewExample(example, ANSWER) for example in encode_documents([item], tokenizer, self.cutoff_len,
                                                                                  "preview")]
