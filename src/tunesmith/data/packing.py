"""Padding-free micro-batches.

Rows are concatenated into one sequence per micro-batch (batch dimension 1) up to a token budget. Position ids
restart at 0 for every row; transformers reads that as a packed batch and confines attention to each row
(block-diagonal causal mask for SDPA/eager, varlen kernels for flash-attention), so no row sees another and no
FLOP is spent on padding. Targets are shifted *inside* each row, so the last token of one row never learns to
predict the first token of the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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

    @property
    def num_samples(self) -> int:
        return self.num_rows // self.rows_per_sample

    def row_index(self) -> torch.Tensor:
        """(T,): the row each token belongs to."""
        lengths = (self.cu_seq_lens[1:] - self.cu_seq_lens[:-1]).long()
        return torch.repeat_interleave(torch.arange(self.num_rows, device=lengths.device), lengths)

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE).sum())

    def to(self, device) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.position_ids.to(device), self.targets.to(device),
                          self.cu_seq_lens.to(device), self.num_rows, self.max_row_len, self.rows_per_sample)

    def model_inputs(self) -> dict:
        """Keyword arguments for a transformers causal LM: packed positions plus varlen row boundaries."""
        return {"input_ids": self.input_ids, "position_ids": self.position_ids, "cu_seq_lens_q": self.cu_seq_lens,
                "cu_seq_lens_k": self.cu_seq_lens, "max_length_q": self.max_row_len, "max_length_k": self.max_row_len}


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


def pack_step(examples: list[Example], token_budget: int) -> list[MicroBatch]:
    """Group one optimizer step's rows into as few micro-batches as fit the budget."""
    return [pack_rows(b) for b in _first_fit(examples, len, token_budget)]


def pack_pairs(pairs: list[tuple[Example, Example]], token_budget: int) -> list[MicroBatch]:
    """Preference pairs: a pair never splits across micro-batches; its chosen row is followed by its rejected row."""
    batches = []
    for group in _first_fit(pairs, lambda p: len(p[0]) + len(p[1]), token_budget):
        batch = pack_rows([row for pair in group for row in pair])
        batch.rows_per_sample = 2
        batches.append(batch)
    return batches
