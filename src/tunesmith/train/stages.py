"""A stage is a small strategy on the one training path: how items become examples, how examples become
micro-batches, and what loss a micro-batch gives. The loop in `loop.py` never knows which stage it runs.

Losses are returned as a *sum* over the stage's loss units together with their count, so the loop can normalise by
all units of the optimizer step (across micro-batches and processes): the result is independent of how rows were
grouped into micro-batches. The unit is the stage's to define (`Stage.loss_units`): a target token for sft and pt,
a preference pair for rm and dpo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tunesmith.config import TrainConfig
from tunesmith.data.dataset import Item, encode_documents, encode_items
from tunesmith.data.packing import IGNORE, Example, MicroBatch, pack_step
from tunesmith.data.templates import Template
from tunesmith.train.fused_loss import chunked_linear_cross_entropy, output_head


@dataclass
class LossOutput:
    loss_sum: torch.Tensor  # summed over the stage's loss units (target tokens, or pairs)
    num_targets: int  # how many units the sum covers
    metrics: dict[str, float] = field(default_factory=dict)


def causal_lm_loss(model, batch: MicroBatch, chunked: bool = True) -> LossOutput:
    """Next-token cross-entropy on the target positions only.

    Only positions that carry a target go through the vocabulary head: on answer-only SFT that skips most of the
    (large) logits entirely. Where the head is a plain linear map (see fused_loss.output_head) it runs in chunks with
    its gradients taken on the spot, so full-vocabulary logits never exist for the whole micro-batch; otherwise the
    model projects the kept positions itself (`logits_to_keep` with a boolean mask).
    """
    keep = batch.targets != IGNORE
    split = output_head(model) if chunked else None
    if split is not None:
        decoder, head = split
        hidden = decoder(**batch.model_inputs(), use_cache=False).last_hidden_state[keep]
        return LossOutput(chunked_linear_cross_entropy(hidden, head.weight, batch.targets[keep]), int(keep.sum()))
    out = model(**batch.model_inputs(), logits_to_keep=keep, use_cache=False)
    logits = out.logits.reshape(-1, out.logits.shape[-1])
    loss_sum = F.cross_entropy(logits.float(), batch.targets[keep], reduction="sum")
    return LossOutput(loss_sum, int(keep.sum()))


class Stage:
    """Defaults every stage shares: a language-model head, no extra trained heads, nothing to prepare."""

    name = ""
    head = "causal"  # or "score": loader.load_model builds a one-scalar head (reward models)
    heads: tuple[str, ...] = ()  # new modules that always train in full, whatever the method

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def prepare(self, model) -> None:
        """Called once with the trainable model before the first step (e.g. DPO's reference copy)."""

    def loss_units(self, batch: MicroBatch) -> int:
        """What the loss of `batch` is a sum over (the loop's normaliser): here its target tokens."""
        return batch.num_targets


class SFTStage(Stage):
    """Supervised fine-tuning on conversations; loss on answers (and prompts with train_on_prompt)."""

    name = "sft"

    def encode(self, items: list[Item], template: Template, tokenizer, cfg: TrainConfig, split: str) -> list[Example]:
        return encode_items(items, template, tokenizer, cfg, split)

    def batches(self, examples: list[Example], token_budget: int) -> list[MicroBatch]:
        return pack_step(examples, token_budget)

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        return causal_lm_loss(model, batch)


class PretrainStage(SFTStage):
    """Continued pretraining on raw text: each document + EOS, split into cutoff_len chunks; loss on every token."""

    name = "pt"

    def encode(self, items: list[Item], template: Template, tokenizer, cfg: TrainConfig, split: str) -> list[Example]:
        return encode_documents(items, tokenizer, cfg.cutoff_len, split)


def get_stage(cfg: TrainConfig) -> Stage:
    from tunesmith.train.preference import DPOStage, RewardStage

    stages = {"sft": SFTStage, "pt": PretrainStage, "rm": RewardStage, "dpo": DPOStage}
    return stages[cfg.stage](cfg)
