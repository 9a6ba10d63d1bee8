"""What every stage shares: the Stage interface, the loss output, and next-token cross-entropy on target positions.

Losses are returned as a *sum* over the stage's loss units together with their count, so the loop can normalise by
all units of the optimizer step (across micro-batches and processes): the result is independent of how rows were
grouped into micro-batches. The unit is the stage's to define (`Stage.loss_units`): a target token for sft and pt,
a preference pair for rm and dpo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tunesmith.data.formats import Conversation, Document, Preference
from tunesmith.data.packing import IGNORE, Example, MicroBatch
from tunesmith.data.templates import Template
from tunesmith.errors import DataError
from tunesmith.model.fused_loss import output_head, router_kwargs, router_loss

Item = Conversation | Document | Preference


@dataclass
class LossOutput:
    loss_sum: torch.Tensor  # summed over the stage's loss units (target tokens, or pairs)
    num_targets: int  # how many units the sum covers
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PreviewExample:
    """One row as training sees it, for the data preview: the encoded example (None: training drops the row), the
    kind of its trained part (answer, chosen, rejected), and the row's text for a dropped row."""

    example: Example | None
    kind: str
    text: str = ""


class Stage:
    """A strategy on the one training path. Subclasses set the class attributes and implement encode/loss."""

    name = ""
    description = ""  # one line for model cards and help
    head = "causal"  # or "score": the model gets a one-scalar head (reward models)
    heads: tuple[str, ...] = ()  # new modules that always train in full, whatever the method
    rows = Conversation  # the canonical row type it trains on (Conversation, Document or Preference)
    keys: tuple[str, ...] = ("cutoff_len", "train_on_prompt")  # the settings it reads

    def __init__(self, cutoff_len: int = 1024, train_on_prompt: bool = False, **settings):
        self.cutoff_len = cutoff_len
        self.train_on_prompt = train_on_prompt
        self.settings = settings

    @classmethod
    def from_settings(cls, settings) -> "Stage":
        return cls(**{key: getattr(settings, key) for key in cls.keys if hasattr(settings, key)})

    def adopt(self, item: Item) -> Item:
        """`item` as this stage reads it (sft reads a text row that is a rendered chat as its conversation)."""
        return item

    def check_row(self, item: Item) -> str | None:
        """Why this stage cannot train on `item` (as `adopt` read it), with the fix; None when it can."""
        return None if isinstance(item, self.rows) else self.mismatch(item)

    def mismatch(self, item: Item) -> str:
        return f"stage={self.name} cannot train on this row ({type(item).__name__})"

    def checked(self, items: list[Item]) -> list[Item]:
        """`items` as this stage reads them, each checked: by the data loader before any model loads (a bad row
        stops the run in one line), and by encode (a wrong row never becomes a misleading encoding error)."""
        items = [self.adopt(item) for item in items]
        for item in items:
            problem = self.check_row(item)
            if problem:
                raise DataError(f"{item.location}: {problem}")
        return items

    def encode(self, items: list[Item], template: Template, tokenizer, split: str) -> list:
        raise NotImplementedError

    def batches(self, examples: list, token_budget: int, packed: bool = True) -> list[MicroBatch]:
        """Micro-batches of at most `token_budget` tokens; `packed=False` for a model that cannot keep packed rows
        apart (data.packing)."""
        raise NotImplementedError

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        raise NotImplementedError

    def loss_units(self, batch: MicroBatch) -> int:
        """What the loss of `batch` is a sum over (the loop's normaliser): here its target tokens."""
        return batch.num_targets

    def prepare(self, model) -> None:
        """Called once with the trainable model before the first step (e.g. DPO's reference copy)."""

    def preview(self, item: Item, template: Template, tokenizer) -> list[PreviewExample]:
        """The row as training encodes it (the Web UI's data preview shows exactly this)."""
        raise NotImplementedError


def causal_lm_loss(model, batch: MicroBatch, chunked: bool = True) -> LossOutput:
    """Next-token cross-entropy on the target positions only.

    Only positions that carry a target go through the vocabulary head: on answer-only SFT that skips most of the
    (large) logits entirely. Where the head is a plain linear map (see model.fused_loss.output_head) it runs in
    chunks with its gradients taken on the spot, so full-vocabulary logits never exist for the whole micro-batch;
    otherwise the model projects the kept positions itself (`logits_to_keep` with a boolean mask).
    """
    keep = batch.targets != IGNORE
    split = output_head(model) if chunked else None
    if split is not None:
        out = split.decoder(**batch.model_inputs(), use_cache=False, **router_kwargs(model))
        loss_sum = split.loss_sum(out.last_hidden_state[keep], batch.targets[keep])
    else:
        out = model(**batch.model_inputs(), logits_to_keep=keep, use_cache=False)
        logits = out.logits.reshape(-1, out.logits.shape[-1])
        loss_sum = F.cross_entropy(logits.float(), batch.targets[keep], reduction="sum")
    router = router_loss(model, out, int(keep.sum()))  # mixture-of-experts load balancing, where configured
    return LossOutput(loss_sum if router is None else loss_sum + router, int(keep.sum()))
