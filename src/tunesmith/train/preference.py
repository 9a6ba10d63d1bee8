"""Preference stages on the shared loop: rm (reward model) and dpo. Both read the same pairs (prompt, chosen,
rejected), pack each pair's two rows next to each other, and differ only in model head and loss.

Losses are sums over pairs and the pair is the loss unit (`loss_units`), so the loop's per-step normalisation gives
the mean over the step's pairs; metrics are sums too and are divided the same way (accuracy is a fraction of pairs).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from tunesmith.config import TrainConfig
from tunesmith.data.dataset import Item, encode_conversation
from tunesmith.data.formats import Preference
from tunesmith.data.packing import IGNORE, Example, MicroBatch, pack_pairs
from tunesmith.data.templates import Template
from tunesmith.errors import DataError
from tunesmith.train.stages import LossOutput, Stage

Pair = tuple[Example, Example]


def encode_pairs(items: list[Item], template: Template, tokenizer, cfg: TrainConfig, split: str) -> list[Pair]:
    pairs = []
    for item in items:
        if not isinstance(item, Preference):
            raise DataError(f"{item.location}: stage={cfg.stage} needs preference rows (prompt, chosen, rejected)")
        if item.chosen.strip() == item.rejected.strip():  # a pair with nothing to prefer: zero gradient, no signal
            raise DataError(f"{item.location}: 'chosen' and 'rejected' are the same answer, so there is nothing to "
                            "prefer; fix the pair or delete the row")
        chosen, rejected = (encode_conversation(item.conversation(answer), template, tokenizer, cfg.cutoff_len)
                            for answer in (item.chosen, item.rejected))
        if chosen is not None and rejected is not None:
            pairs.append((chosen, rejected))
    if items and not pairs:
        raise DataError(f"{split}: no pair fits cutoff_len={cfg.cutoff_len}; raise cutoff_len")
    return pairs


def _unwrap(model):
    model = getattr(model, "module", model)  # DDP
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft


def reward_scores(model, batch: MicroBatch) -> torch.Tensor:
    """One scalar per row: the score head on the hidden state of the row's last token (its EOS)."""
    scorer = _unwrap(model)
    backbone = getattr(scorer, scorer.base_model_prefix)
    hidden = backbone(**batch.model_inputs(), use_cache=False).last_hidden_state[0]
    last = (batch.cu_seq_lens[1:] - 1).long()
    return scorer.score(hidden[last]).squeeze(-1).float()


def answer_logps(model, batch: MicroBatch) -> torch.Tensor:
    """Summed log-probability of each row's answer tokens, with only answer positions through the vocab head."""
    keep = batch.targets != IGNORE
    out = model(**batch.model_inputs(), logits_to_keep=keep, use_cache=False)
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    logps = -F.cross_entropy(logits, batch.targets[keep], reduction="none")
    rows = batch.row_index()[keep[0]]
    return torch.zeros(batch.num_rows, device=logps.device).index_add(0, rows, logps)


class _PairStage(Stage):
    def encode(self, items, template, tokenizer, cfg, split):
        return encode_pairs(items, template, tokenizer, cfg, split)

    def batches(self, pairs: list[Pair], token_budget: int) -> list[MicroBatch]:
        return pack_pairs(pairs, max(token_budget, 2 * self.cfg.cutoff_len))  # a pair always fits

    def loss_units(self, batch: MicroBatch) -> int:
        return batch.num_samples  # pairs


class RewardStage(_PairStage):
    """Pairwise reward model: -log sigmoid(score(chosen) - score(rejected))."""

    name = "rm"
    head = "score"
    heads = ("score",)

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        scores = reward_scores(model, batch)
        margin = scores[0::2] - scores[1::2]
        return LossOutput(-F.logsigmoid(margin).sum(), margin.numel(),
                          {"accuracy": (margin > 0).sum().item(), "margin": margin.sum().item()})


class DPOStage(_PairStage):
    """Sigmoid DPO. The reference is the base model: with an adapter, the same weights with the adapter switched
    off (no second copy); with full/freeze, a frozen copy made before training."""

    name = "dpo"

    def prepare(self, model) -> None:
        self.reference = None
        if not hasattr(model, "disable_adapter"):
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)

    def reference_logps(self, model, batch: MicroBatch) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                return answer_logps(self.reference, batch)
            peft_model = getattr(model, "module", model)
            with peft_model.disable_adapter():
                return answer_logps(peft_model, batch)

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        policy = answer_logps(model, batch)
        reference = self.reference_logps(model, batch)
        rewards = self.cfg.beta * (policy - reference)
        chosen, rejected = rewards[0::2], rewards[1::2]
        out = dpo_loss(chosen, rejected)
        return LossOutput(out.sum(), chosen.numel(), {
            "rewards/chosen": chosen.sum().item(), "rewards/rejected": rejected.sum().item(),
            "accuracy": (chosen > rejected).sum().item(), "margin": (chosen - rejected).sum().item()})


def dpo_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per-pair sigmoid DPO loss; rewards are beta * (log pi - log pi_ref) of each answer."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards)


def dpo_loss_by_hand(policy_chosen: float, policy_rejected: float, ref_chosen: float, ref_rejected: float,
                     beta: float) -> float:
    """The formula written out, for tests: -log(1 / (1 + exp(-beta * (log-ratio difference))))."""
    z = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return math.log1p(math.exp(-z))
