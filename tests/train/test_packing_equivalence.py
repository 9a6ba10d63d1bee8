"""A packed micro-batch gives exactly the losses of its rows run one at a time (no row sees another)."""

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.packing import IGNORE, Example, pack_rows
from tunesmith.model.attention import use_varlen_attention
from tunesmith.stages.base import causal_lm_loss


def rows():
    g = torch.Generator().manual_seed(0)
    out = []
    for n, prompt in ((11, 4), (7, 2), (16, 9), (5, 1)):
        ids = torch.randint(10, 1000, (n,), generator=g).tolist()
        out.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def load(tiny_model_dir, varlen: bool):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    if varlen:
        use_varlen_attention(model)
    return model.eval()


def per_row_losses_from_full_logits(model, mb, n_rows):
    # use_cache=False matters: with a KV cache transformers skips its packed-sequence detection.
    logits = model(**mb.model_inputs(), use_cache=False).logits[0]
    losses = F.cross_entropy(logits, mb.targets[0], ignore_index=IGNORE, reduction="none")
    bounds = mb.cu_seq_lens.tolist()
    return [losses[s:e].sum().item() for s, e in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("varlen", [False, True], ids=["sdpa-packed-mask", "varlen"])
def test_packed_equals_rows_one_at_a_time(tiny_model_dir, varlen):
    model = load(tiny_model_dir, varlen)
    examples = rows()
    with torch.no_grad():
        packed = pack_rows(examples)
        alone = [causal_lm_loss(model, pack_rows([ex])) for ex in examples]
        together = causal_lm_loss(model, packed)
        per_row = per_row_losses_from_full_logits(model, packed, len(examples))
    for got, want in zip(per_row, alone):
        assert got == pytest.approx(want.loss_sum.item(), rel=1e-5, abs=1e-5)
    assert together.loss_sum.item() == pytest.approx(sum(per_row), rel=1e-5)
    assert together.num_targets == sum(a.num_targets for a in alone)
    # The packed mean loss equals the token-weighted mean of the rows run alone.
    mean_alone = sum(a.loss_sum.item() for a in alone) / sum(a.num_targets for a in alone)
    assert together.loss_sum.item() / together.num_targets == pytest.approx(mean_alone, rel=1e-5)


def test_varlen_gradients_match_packed_mask(tiny_model_dir):
    """The fast attention path gives the same gradients as transformers' own packed-mask path."""
    grads = []
    for varlen in (False, True):
        model = load(tiny_model_dir, varlen)
        model.zero_grad()
        causal_lm_loss(model, pack_rows(rows())).loss_sum.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_logits_to_keep_equals_full_logits(tiny_model_dir):
    """Projecting only target positions through the head gives the plain full-logits loss."""
    model = load(tiny_model_dir, varlen=True)
    mb = pack_rows(rows())
    with torch.no_grad():
        fast = causal_lm_loss(model, mb).loss_sum.item()
        plain = sum(per_row_losses_from_full_logits(model, mb, mb.num_rows))
    assert fast == pytest.approx(plain, rel=1e-5)
