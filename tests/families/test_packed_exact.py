"""On CPU, a packed micro-batch's loss and gradients equal the model's own eager forward on each row alone, for
every family: rows longer than the sliding window, soft-capped attention and logits, q/k norms, fused projections.
This is the training path `tunesmith train` takes on a CPU: row-confined attention + the chunked head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.families.families import FAMILIES, WINDOW
from tunesmith.data.packing import IGNORE, Example, pack_rows
from tunesmith.model.attention import use_varlen_attention, wants_varlen
from tunesmith.model.fused_loss import output_head
from tunesmith.stages.base import causal_lm_loss


def lengths(window: int) -> list[tuple[int, int]]:
    """(tokens, prompt tokens) per row: longer than the window, shorter, and twice as long."""
    return [(3 * window + 1, 4), (window - 1, 2), (2 * window, 5)]


def rows(vocab: int, window: int) -> list[Example]:
    g = torch.Generator().manual_seed(1)
    out = []
    for length, prompt in lengths(window):
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        out.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def load(folder, attention: str | None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attention)
    return model.train()  # the families' dropouts are 0: train mode changes nothing but is what training runs


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILIES, ids=[f.slug for f in FAMILIES])
def test_packed_loss_and_gradients_equal_eager_rows_alone(family, family_dirs):
    reference = load(family_dirs[family.slug], "eager")
    config = reference.config.get_text_config()  # a vision-language model's: its language model's
    window = getattr(config, "sliding_window", None) or WINDOW
    examples = rows(config.vocab_size, window)
    want = torch.zeros((), dtype=torch.float64)
    for ex in examples:  # the model's own eager forward, one row at a time, full logits
        logits = reference(input_ids=torch.tensor([ex.input_ids]), use_cache=False).logits[0]
        loss = F.cross_entropy(logits[:-1], torch.tensor(ex.labels[1:]), ignore_index=IGNORE, reduction="sum")
        loss.backward()
        want += loss.detach().double()

    packed = load(family_dirs[family.slug], None)
    assert wants_varlen(torch.device("cpu"), packed)  # the default CPU path, whatever the family's attention
    use_varlen_attention(packed)
    assert output_head(packed) is not None  # and the chunked head (soft-capped for Gemma 2)
    got = causal_lm_loss(packed, pack_rows(examples))
    got.loss_sum.backward()

    assert got.num_targets == sum(len(ex) - p for ex, (_, p) in zip(examples, lengths(window)))
    torch.testing.assert_close(got.loss_sum.double(), want, rtol=1e-5, atol=1e-5)
    expected, actual = grads(reference), grads(packed)
    assert expected.keys() == actual.keys() and expected
    for name, g in expected.items():  # fp32 summation order differs: ~2e-6 of the largest entry; a dropped window
        error = (actual[name] - g).abs().max().item() / g.abs().max().item()  # or softcap costs 0.1-1
        assert error < 3e-5, (name, error)
