"""What the preference stages (rm, dpo) share: pairs (prompt, chosen, rejected) encoded as two rows, packed next to
each other so a pair never splits across micro-batches, and the pair as the loss unit. The loop's per-step
normalisation then gives the mean over the step's pairs; metrics are sums too and are divided the same way
(accuracy is a fraction of pairs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunesmith.data.dataset import encode_conversation
from tunesmith.data.formats import Document, Preference
from tunesmith.data.packing import IGNORE, Example, MicroBatch, pack_pairs
from tunesmith.errors import DataError
from tunesmith.stages.base import Item, PreviewExample, Stage
from tunesmith.stages.sft import _conversation_preview

Pair = tuple[Example, Example]
CHOSEN, REJECTED = "chosen", "rejected"


def answer_logps(model, batch: MicroBatch, average: bool = False) -> torch.Tensor:
    """Log-probability of each row's answer: summed over its tokens, or their mean (`average`). Only answer
    positions go through the vocabulary head."""
    keep = batch.targets != IGNORE
    out = model(**batch.model_inputs(), logits_to_keep=keep, use_cache=False)
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    logps = -F.cross_entropy(logits, batch.targets[keep], reduction="none")
    rows = batch.row_index()[keep.flatten()]
    total = torch.zeros(batch.num_rows, device=logps.device).index_add(0, rows, logps)
    return total / torch.bincount(rows, minlength=batch.num_rows).clamp(min=1) if average else total


def unwrap(model):
    """The transformers model inside DDP and peft wrappers."""
    model = getattr(model, "module", model)  # DDP
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft


class PairStage(Stage):
    rows = Preference
    keys = ("cutoff_len",)

    def check_row(self, item: Item) -> str | None:
        problem = super().check_row(item)
        if problem is None and item.chosen.strip() == item.rejected.strip():  # zero gradient, no signal
            return ("'chosen' and 'rejected' are the same answer, so there is nothing to prefer; fix the pair or "
                    "delete the row")
        return problem

    def mismatch(self, item: Item) -> str:
        kind = "raw text (stage=pt)" if isinstance(item, Document) else "a conversation (stage=sft)"
        return (f"stage={self.name} needs preference rows (prompt, chosen, rejected), this row is {kind}; add "
                "'chosen' and 'rejected' answers or change the stage")

    def encode(self, items: list[Item], template, tokenizer, split: str) -> list[Pair]:
        pairs = []
        for item in self.checked(items):
            chosen, rejected = (encode_conversation(item.conversation(answer), template, tokenizer, self.cutoff_len)
                                for answer in (item.chosen, item.rejected))
            if chosen is not None and rejected is not None:
                pairs.append((chosen, rejected))
        if items and not pairs:
            raise DataError(f"{split}: no pair fits cutoff_len={self.cutoff_len}; raise cutoff_len")
        return pairs

    def batches(self, pairs: list[Pair], token_budget: int, packed: bool = True) -> list[MicroBatch]:
        return pack_pairs(pairs, max(token_budget, 2 * self.cutoff_len), packed)  # a pair always fits

    def loss_units(self, batch: MicroBatch) -> int:
        return batch.num_samples  # pairs

    def preview(self, item: Item, template, tokenizer) -> list[PreviewExample]:
        return [_conversation_preview(item.conversation(answer), template, tokenizer, self.cutoff_len, False, kind)
                for answer, kind in ((item.chosen, CHOSEN), (item.rejected, REJECTED))]
