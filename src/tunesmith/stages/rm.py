"""stage=rm: a pairwise reward model, -log sigmoid(score(chosen) - score(rejected)), from a one-scalar head on the
hidden state of each row's last token (its end-of-answer token)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunesmith.data.packing import MicroBatch
from tunesmith.stages.base import LossOutput
from tunesmith.stages.pairs import PairStage, unwrap


def reward_scores(model, batch: MicroBatch) -> torch.Tensor:
    """One scalar per row: the score head on the hidden state of the row's last token."""
    scorer = unwrap(model)
    backbone = getattr(scorer, scorer.base_model_prefix)
    hidden = backbone(**batch.model_inputs(), use_cache=False).last_hidden_state.flatten(0, 1)
    return scorer.score(hidden[batch.row_ends()]).squeeze(-1).float()


class RewardStage(PairStage):
    name = "rm"
    description = "reward model (scalar score head, pairwise loss)"
    head = "score"
    heads = ("score",)

    def loss(self, model, batch: MicroBatch) -> LossOutput:
        scores = reward_scores(model, batch)
        margin = scores[0::2] - scores[1::2]
        return LossOutput(-F.logsigmoid(margin).sum(), margin.numel(),
                          {"accuracy": (margin > 0).sum().item(), "margin": margin.sum().item()})
