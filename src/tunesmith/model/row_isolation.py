"""Can this model keep rows packed into one sequence apart?

Attention keeps them apart through row boundaries (model.attention). Other token-mixing layers need kernels that read
those boundaries too: Qwen3.5's and Qwen3-Next's linear attention (Gated DeltaNet) has them only in the CUDA package
flash-linear-attention, and without it transformers refuses packed sequences; a family that came out after this
code may mix rows in silence. So instead of a list of families, a loaded model is asked once: two short rows packed
together must give the second row the outputs it gets alone. If not, training and evaluation give each row a
micro-batch of its own (`packed=False` in data.packing): exact, and still without padding but for preference pairs.
"""

from __future__ import annotations

import logging

import torch

from tunesmith.data.packing import Example, pack_rows
from tunesmith.errors import first_line

log = logging.getLogger("tunesmith")
TOLERANCE = 0.05  # of the largest output: rounding in bf16 stays far below, a row that sees another far above


def packed_rows_stay_apart(model) -> bool:
    """Are two packed rows computed as each alone? Logged when not, with why."""
    reason = _mixing(model)
    if reason is None:
        return True
    log.info("%s cannot keep packed rows apart (%s): each row trains in a micro-batch of its own, a preference "
             "pair's two side by side", type(model).__name__, reason)
    return False


def _mixing(model) -> str | None:
    """None when packed rows stay apart, else what showed they do not."""
    vocab = model.get_input_embeddings().num_embeddings
    device = model.get_input_embeddings().weight.device
    g = torch.Generator().manual_seed(0)
    first, second = (torch.randint(vocab, (n,), generator=g).tolist() for n in (11, 7))
    was_training = model.training
    model.eval()  # no dropout: the two forwards must be comparable
    try:
        with torch.no_grad():
            packed = _last_hidden(model, [first, second], device)[len(first):]
            alone = _last_hidden(model, [second], device)
    except Exception as e:  # noqa: BLE001 - transformers refuses (Qwen3.5 without flash-linear-attention), or fails
        return first_line(e, 200)
    finally:
        model.train(was_training)
    error = ((packed - alone).abs().max() / alone.abs().max().clamp(min=1e-6)).item()
    return None if error < TOLERANCE else f"the second of two packed rows changed by {error:.0%} of its outputs"


def _last_hidden(model, rows: list[list[int]], device) -> torch.Tensor:
    """The last layer's outputs for `rows` packed into one sequence: what every head (the vocabulary's, a reward
    model's score) reads."""
    batch = pack_rows([Example(ids, ids) for ids in rows]).to(device)
    return model(**batch.model_inputs(), use_cache=False, output_hidden_states=True).hidden_states[-1][0].float()
