"""The decoding backend for any transformers model: its own forward with a `DynamicCache`, prompts left-padded.

This is the general path (several peft adapters on one base, architectures the fast path does not know, GPUs).
Rows leave with the public `Cache.batch_select_indices`; rows join by merging two caches (infer/kv.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunesmith.infer import kv


@dataclass
class HfState:
    cache: object
    mask: torch.Tensor  # (B, T): 0 on left padding
    positions: torch.Tensor  # (B, 1): position of each row's last token


class HfBackend:
    name = "transformers"

    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.cache_keyword = kv.cache_keyword(model)

    @torch.no_grad()
    def prefill(self, prompts: list[list[int]]) -> tuple[HfState, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                         **{self.cache_keyword: kv.new_cache(self.model)})
        return HfState(kv.returned_cache(out), mask, positions[:, -1:]), out.logits[:, -1].float().cpu()

    @torch.no_grad()
    def decode(self, state: HfState, tokens: list[int]) -> torch.Tensor:
        step = torch.tensor(tokens, device=self.device).unsqueeze(1)
        state.mask = torch.cat([state.mask, torch.ones_like(step)], dim=1)
        state.positions = state.positions + 1
        out = self.model(input_ids=step, attention_mask=state.mask, position_ids=state.positions, use_cache=True,
                         **{self.cache_keyword: state.cache})
        state.cache = kv.returned_cache(out)
        return out.logits[:, -1].float().cpu()

    def keep(self, state: HfState, rows: list[int]) -> HfState:
        if not rows:
            return state  # the batch is over; its cache goes with it
        kv.select_rows(state.cache, rows, self.device)
        state.mask, state.positions = state.mask[rows], state.positions[rows]
        padding = int((state.mask.sum(0) == 0).cumprod(0).sum())
        if padding and kv.can_merge(state.cache):  # the rows that needed those columns are gone
            state.cache, state.mask = kv.drop_left(state.cache, padding), state.mask[:, padding:]
        return state

    def merge(self, a: HfState, b: HfState) -> HfState:
        wa, wb = a.mask.shape[1], b.mask.shape[1]
        width = max(wa, wb)
        pad = lambda m, w: torch.nn.functional.pad(m, (width - w, 0))
        return HfState(kv.merge(a.cache, b.cache, wa, wb), torch.cat([pad(a.mask, wa), pad(b.mask, wb)]),
                       torch.cat([a.positions, b.positions]))

    def can_merge(self, state: HfState) -> bool:
        return kv.can_merge(state.cache)
