"""stage=orpo: odds-ratio preference optimisation (Hong et al., 2024). Supervised fine-tuning on the chosen answer and
a preference for it over the rejected one, in one stage and without a reference model: per pair,

    -log p(chosen) - beta * log sigmoid(log odds(chosen) - log odds(rejected)),  odds(y) = p(y) / (1 - p(y)),

with log p the answer's log-probability averaged over its tokens, as LLaMA-Factory (`pref_loss: orpo`) computes it
(TRL's ORPOTrainer takes the same odds ratio; its NLL term is the mean over all chosen tokens of the batch instead
of over each pair's); `beta` (their `pref_beta` / `beta`, 0.1) weighs the preference term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunesmith.data.packing import MicroBatch
from tunesmith.stages.base import LossOutput
from tunesmith.stages.pairs import PairStage, answer_logps


def log_odds(logp: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) from log p < 0; log(-expm1(x)) is log(1 - e^x) without the cancellation of 1 - e^x near 0."""
    logp = logp.clamp(max=-1e-6)  # p = 1 exactly: infinite odds
    return logp - torch.log(-torch.expm1(logp))


def orpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair: (the loss, log sigmoid of the log odds ratio), from the answers' mean log-probabilities."""
    ratio = F.logsigmoid(log_odds(chosen) - log_odds(rejected))
    return -chosen - beta * ratio, ratio


class ORPOStage(PairStage):
    name = "orpo"
    description = "odds-ratio preference optimisation (SFT and preference in one, no reference model)"
    keys = ("cutoff_len", "beta")

    def __init__(self, cutoff_len: int = 1024, beta: float = 0.1, **settings):
        super().__init__(cutoff_len, **settings)
        self.beta = beta

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        logps = answer_logps(model, batch, average=True)
        chosen, rejected = logps[0::2], logps[1::2]
        loss, ratio = orpo_loss(chosen, rejected, self.beta)
        return LossOutput(loss.sum(), chosen.numel(), {
            "nll": -chosen.sum().item(), "log_odds_ratio": ratio.sum().item(),
            "accuracy": (chosen > rejected).sum().item(), "margin": (chosen - rejected).sum().item()})
