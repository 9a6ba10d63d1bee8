"""Pick the next token from one row of logits: penalties, temperature, top-k, top-p, then a seeded draw.

Penalties follow their usual definitions: `repetition_penalty` (CTRL, as in transformers) divides the logit of every
token already seen in the prompt or the answer; `presence_penalty` and `frequency_penalty` (OpenAI) subtract a fixed
amount from every token already in the answer, and an amount per occurrence. Log-probabilities are reported from the
model's own distribution, before any of these settings, like OpenAI's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Below this temperature the scaled logits overflow float32; the limit of sampling as T -> 0 is the argmax.
GREEDY_BELOW = 1e-6


@dataclass
class TokenLogprob:
    token: int
    logprob: float
    top: list[tuple[int, float]]  # the most likely tokens with their log-probabilities, best first


@dataclass
class History:
    """What the penalties need to know about one request: every token seen, and the answer's token counts."""

    seen: set[int]
    counts: dict[int, int] = field(default_factory=dict)

    def add(self, token: int) -> None:
        self.seen.add(token)
        self.counts[token] = self.counts.get(token, 0) + 1


def sample(logits: torch.Tensor, p, seen: set[int], generator: torch.Generator,
           counts: dict[int, int] | None = None) -> int:
    """`logits` (V,) is changed in place. `p` is a SamplingParams."""
    if p.repetition_penalty != 1.0 and seen:
        index = torch.tensor(sorted(seen))
        picked = logits[index]
        logits[index] = torch.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
    if counts and (p.frequency_penalty or p.presence_penalty):
        index = torch.tensor(list(counts))
        times = torch.tensor(list(counts.values()), dtype=logits.dtype)
        logits[index] -= times * p.frequency_penalty + p.presence_penalty
    if p.temperature < GREEDY_BELOW:
        return int(logits.argmax())
    # Subtracting the maximum first keeps any positive temperature finite: the best token scores 0, others below.
    logits = (logits - logits.max()) / p.temperature
    if p.top_k > 0:
        kth = torch.topk(logits, min(p.top_k, logits.numel())).values[-1]
        logits[logits < kth] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        drop = sorted_probs.cumsum(0) - sorted_probs > p.top_p  # keep the smallest set reaching top_p
        sorted_probs[drop] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best = torch.topk(logprobs, top) if top > 0 else None
    alternatives = list(zip(best.indices.tolist(), best.values.tolist())) if best is not None else []
    return TokenLogprob(token, float(logprobs[token]), alternatives)
