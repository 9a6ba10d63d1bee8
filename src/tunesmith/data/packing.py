"""Padding-free micro-batches.

Rows are concatenated into one sequence per micro-batch (batch dimension 1) up to a token budget. Position ids
restart at 0 for every row; transformers reads that as a packed batch and confines attention to each row
(block-diagonal causal mask for SDPA/eager, varlen kernels for flash-attention), so no row sees another and no
FLOP is spent on padding. Targets are shifted *inside* each row, so the last token of one row never learns to
predict the first token of the next.

A model whose layers cannot keep packed rows apart (Qwen3.5's linear attention without its CUDA kernels; see
model.row_isolation) gets `packed=False`: each row is its own micro-batch, and a preference pair's two rows sit side
by side in a batch of two, right-padded: a causal model's outputs at a row's own positions never see the padding
after them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # labels[t] = input_ids[t] where the loss applies, IGNORE elsewhere

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # (1, T)
    position_ids: torch.Tensor  # (1, T)
    targets: torch.Tensor  # (1, T): the token position t must predict, IGNORE where no loss
    cu_seq_lens: torch.Tensor  # (rows + 1,): row boundaries, the varlen-attention convention
    num_rows: int
    max_row_len: int
    rows_per_sample: int = 1  # 2 for preference pairs: rows 2i and 2i+1 are chosen and rejected
    packed: bool = True  # False: (rows, longest) right-padded, one row per line (pad_rows)

    @property
    def num_samples(self) -> int:
        return self.num_rows // self.rows_per_sample

    def row_index(self) -> torch.Tensor:
        """(all positions,): the row each position of the flattened input belongs to."""
        lengths = (self.cu_seq_lens[1:] - self.cu_seq_lens[:-1]).long()
        if not self.packed:
            lengths = torch.full_like(lengths, self.input_ids.shape[1])
        return torch.repeat_interleave(torch.arange(self.num_rows, device=lengths.device), lengths)

    def row_ends(self) -> torch.Tensor:
        """(rows,): where each row's last token is in the flattened input."""
        if self.packed:
            return (self.cu_seq_lens[1:] - 1).long()
        lengths = (self.cu_seq_lens[1:] - self.cu_seq_lens[:-1]).long()
        return torch.arange(self.num_rows, device=lengths.device) * self.input_ids.shape[1] + lengths - 1

    @property
    def num_tokens(self) -> int:
        return int(self.cu_seq_lens[-1])  # the rows' own tokens, never padding

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE).sum())

    def to(self, device) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.position_ids.to(device), self.targets.to(device),
                          self.cu_seq_lens.to(device), self.num_rows, self.max_row_len, self.rows_per_sample,
                          self.packed)

    def model_inputs(self) -> dict:
        """Keyword arguments for a transformers causal LM: packed positions plus varlen row boundaries (none for one
        row, or rows side by side)."""
        inputs = {"input_ids": self.input_ids, "position_ids": self.position_ids}
        if self.packed and self.num_rows > 1:
            inputs |= {"cu_seq_lens_q": self.cu_seq_lens, "cu_seq_lens_k": self.cu_seq_lens,
                       "max_length_q": self.max_row_len, "max_length_k": self.max_row_len}
        return inputs


def pack_rows(examples: list[Example]) -> MicroBatch:
    ids, pos, tgt, bounds = [], [], [], [0]
    for ex in examples:
        ids += ex.input_ids
        pos += range(len(ex))
        tgt += ex.labels[1:] + [IGNORE]  # next-token targets within the row; nothing after its last token
        bounds.append(bounds[-1] + len(ex))
    as_tensor = lambda xs: torch.tensor([xs], dtype=torch.long)  # noqa: E731
    return MicroBatch(as_tensor(ids), as_tensor(pos), as_tensor(tgt), torch.tensor(bounds, dtype=torch.int32),
                      len(examples), max(len(ex) for ex in examples))


def pad_rows(examples: list[Example]) -> MicroBatch:
    """Rows side by side, (rows, longest), right-padded: the padding is never a target and, the model being causal,
    never seen from a row's own positions."""
    longest = max(len(ex) for ex in examples)
    alone = [pack_rows([ex]) for ex in examples]

    def grow(row: torch.Tensor, fill: int) -> torch.Tensor:
        return F.pad(row, (0, longest - row.shape[1]), value=fill)

    return MicroBatch(torch.cat([grow(b.input_ids, 0) for b in alone]),
                      torch.cat([grow(b.position_ids, 0) for b in alone]),
                      torch.cat([grow(b.targets, IGNORE) for b in alone]),
                      torch.tensor([0, *itertools.accumulate(len(ex) for ex in examples)], dtype=torch.int32),
                      len(examples), longest, packed=False)


def _first_fit(items: list, size, token_budget: int) -> list[list]:
    """Bin-pack items into as few bins of at most `token_budget` tokens as first-fit decreasing finds."""
    bins: list[list] = []
    loads: list[int] = []
    for item in sorted(items, key=size, reverse=True):
        for i, load in enumerate(loads):
            if load + size(item) <= token_budget:
                bins[i].append(item)
                loads[i] += size(item)
                break
        else:
            bins.append([item])
            loads.append(size(item))
    return bins


def pack_step(examples: list[Example], token_budget: int, packed: bool = True) -> list[MicroBatch]:
    """Group one optimizer step's rows into as few micro-batches as fit the budget (`packed=False`: one row each)."""
    if not packed:
        return [pack_rows([ex]) for ex in examples]
    return [pack_rows(b) for b in _first_fit(examples, len, token_budget)]


def pack_pairs(pairs: list[tuple[Example, Example]], token_budget: int, packed: bool = True) -> list[MicroBatch]:
    """Preference pairs: a pair never splits across micro-batches; its chosen row is followed by its rejected row
    (`packed=False`: one pair per micro-batch, its rows side by side)."""
    if not packed:
        groups = [[pair] for pair in pairs]
    else:
        groups = _first_fit(pairs, lambda p: len(p[0]) + len(p[1]), token_budget)
    batches = []
    for group in groups:
        batch = (pack_rows if packed else pad_rows)([row for pair in group for row in pair])
        batch.rows_per_sample = 2
        batches.append(batch)
    return batches
