"""Batched text generation with the transformers model itself (no extra engine needed).

The engine decodes a running `Batch`: prompts are left-padded into one batch, one forward pass per new token serves
every request, and each request keeps its own sampling settings, stop strings, seed and token budget. Finished
requests leave the batch after any step and new ones can join it (`join`), which is what the server's continuous
batching is made of (serve/batcher.py); `generate` runs one group to the end (chat). A decoding step on a CPU
is mostly reading the weights, so eight requests in one step cost far less than eight steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import torch

from tunesmith.infer import kv


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Request:
    prompt_ids: list[int]
    params: SamplingParams
    on_text: Callable[[str], None] | None = None  # receives text as it is decided (streaming)
    completion_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop" (EOS or stop string) or "length"
    _sent: int = 0  # characters already handed to on_text


@dataclass
class Batch:
    """Requests being decoded together: their KV cache, attention mask and the logits for their next token."""

    requests: list[Request]
    cache: object
    mask: torch.Tensor  # (B, T): 0 on left padding
    positions: torch.Tensor  # (B, 1): position of each row's last token
    logits: torch.Tensor  # (B, V) float on CPU
    seen: list[set[int]]
    generators: list[torch.Generator]


class Engine:
    def __init__(self, model, tokenizer, stop_token_ids: set[int]):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def generate(self, requests: list[Request]) -> None:
        """Decode these requests together to the end."""
        batch = self.prefill(requests)
        while batch.requests:
            self.step(batch)

    @torch.no_grad()
    def prefill(self, requests: list[Request]) -> Batch:
        from transformers import DynamicCache

        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for i, r in enumerate(requests):  # left padding: every prompt ends at the same column
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=DynamicCache(),
                         use_cache=True, logits_to_keep=1)
        generators = [torch.Generator().manual_seed(r.params.seed if r.params.seed is not None
                                                    else random.getrandbits(63)) for r in requests]
        return Batch(list(requests), out.past_key_values, mask, positions[:, -1:], out.logits[:, -1].float().cpu(),
                     [set(r.prompt_ids) for r in requests], generators)

    @torch.no_grad()
    def step(self, batch: Batch) -> list[Request]:
        """Pick one token for every request; drop the finished ones; return them."""
        tokens = []
        for i, r in enumerate(batch.requests):
            token = sample(batch.logits[i], r.params, batch.seen[i], batch.generators[i])
            batch.seen[i].add(token)
            tokens.append(token)
            self._advance(r, token)
        keep = [i for i, r in enumerate(batch.requests) if r.finish_reason is None]
        finished = [r for r in batch.requests if r.finish_reason is not None]
        for r in finished:
            self._flush(r, final=True)
        if len(keep) < len(batch.requests):
            if keep:
                kv.select_rows(batch.cache, keep)
            batch.requests = [batch.requests[i] for i in keep]
            batch.seen = [batch.seen[i] for i in keep]
            batch.generators = [batch.generators[i] for i in keep]
            batch.mask, batch.positions = batch.mask[keep], batch.positions[keep]
            tokens = [tokens[i] for i in keep]
            padding = int((batch.mask.sum(0) == 0).cumprod(0).sum()) if keep else 0
            if padding and kv.can_merge(batch.cache):  # the rows that needed those columns are gone
                batch.cache, batch.mask = kv.drop_left(batch.cache, padding), batch.mask[:, padding:]
        if not keep:
            return finished
        step = torch.tensor(tokens, device=self.device).unsqueeze(1)
        batch.mask = torch.cat([batch.mask, torch.ones_like(step)], dim=1)
        batch.positions = batch.positions + 1
        out = self.model(input_ids=step, attention_mask=batch.mask, position_ids=batch.positions,
                         past_key_values=batch.cache, use_cache=True)
        batch.cache, batch.logits = out.past_key_values, out.logits[:, -1].float().cpu()
        return finished

    def join(self, batch: Batch | None, requests: list[Request]) -> Batch:
        """Add requests to a running batch (continuous batching): prefill them, then merge the two caches."""
        incoming = self.prefill(requests)
        if batch is None or not batch.requests:
            return incoming
        a, b = batch.mask.shape[1], incoming.mask.shape[1]
        width = max(a, b)
        pad = lambda m, w: torch.nn.functional.pad(m, (width - w, 0))  # noqa: E731
        return Batch(batch.requests + incoming.requests, kv.merge(batch.cache, incoming.cache, a, b),
                     torch.cat([pad(batch.mask, a), pad(incoming.mask, b)]),
                     torch.cat([batch.positions, incoming.positions]), torch.cat([batch.logits, incoming.logits]),
                     batch.seen + incoming.seen, batch.generators + incoming.generators)

    def can_join(self, batch: Batch | None) -> bool:
        return batch is None or not batch.requests or kv.can_merge(batch.cache)

    def _advance(self, r: Request, token: int) -> None:
        if token in self.stop_token_ids:
            r.finish_reason = "stop"
            return
        r.completion_ids.append(token)
        r.text = self.tokenizer.decode(r.completion_ids, skip_special_tokens=True)
        for stop in r.params.stop:
            at = r.text.find(stop)
            if stop and at >= 0:
                r.text, r.finish_reason = r.text[:at], "stop"
        if r.finish_reason is None and len(r.completion_ids) >= r.params.max_new_tokens:
            r.finish_reason = "length"
        if r.finish_reason is None:
            self._flush(r, final=False)

    def _flush(self, r: Request, final: bool) -> None:
        """Send the text that can no longer change: not a half-decoded character, not a possible stop prefix."""
        ready = len(r.text)
        if not final:
            if r.text.endswith("\ufffd"):  # a multi-byte character (e.g. Korean) split across tokens
                ready = len(r.text.rstrip("\ufffd"))
            for stop in r.params.stop:
                for k in range(min(len(stop) - 1, ready), 0, -1):
                    if r.text[:ready].endswith(stop[:k]):
                        ready -= k
                        break
        if r.on_text is not None and ready > r._sent:
            r.on_text(r.text[r._sent:ready])
            r._sent = ready


def sample(logits: torch.Tensor, p: SamplingParams, seen: set[int], generator: torch.Generator) -> int:
    if p.repetition_penalty != 1.0 and seen:
        index = torch.tensor(sorted(seen))
        picked = logits[index]
        logits[index] = torch.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
    if p.temperature <= 0:
        return int(logits.argmax())
    logits = logits / p.temperature
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
