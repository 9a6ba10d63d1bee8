"""stage=dpo: sigmoid DPO with `beta`. The reference is the base model: with an adapter, the same weights with the
adapter switched off (no second copy); with full/freeze, a frozen copy made before training."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from tunesmith.data.packing import MicroBatch
from tunesmith.stages.base import LossOutput
from tunesmith.stages.pairs import PairStage, answer_logps


def dpo_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per-pair sigmoid DPO loss; rewards are beta * (log pi - log pi_ref) of each answer."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards)


def dpo_loss_by_hand(policy_chosen: float, policy_rejected: float, ref_chosen: float, ref_rejected: float,
                     beta: float) -> float:
    """The formula written out, for tests: -log(1 / (1 + exp(-beta * (log-ratio difference))))."""
    z = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return math.log1p(math.exp(-z))


class DPOStage(PairStage):
    name = "dpo"
    description = "direct preference optimisation"
    keys = ("cutoff_len", "beta")

    def __init__(self, cutoff_len: int = 1024, beta: float = 0.1, **settings):
        super().__init__(cutoff_len, **settings)
        self.beta = beta
        self.reference = None

    def prepare(self, model) -> None:
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
        rewards = self.beta * (policy - reference)
        chosen, rejected = rewards[0::2], rewards[1::2]
        out = dpo_loss(chosen, rejected)
        return LossOutput(out.sum(), chosen.numel(), {
            "rewards/chosen": chosen.sum().item(), "rewards/rejected": rejected.sum().item(),
            "accuracy": (chosen > rejected).sum().item(), "margin": (chosen - rejected).sum().item()})
