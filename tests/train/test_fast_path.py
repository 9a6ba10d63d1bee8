"""The chunked vocabulary head + loss computes what the plain full-logits path computes, gradients included.
(Packed vs one-row-at-a-time equality is in test_packing_equivalence.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.packing import IGNORE, Example, pack_rows
from tunesmith.model.attention import use_varlen_attention
from tunesmith.model.fused_loss import chunked_linear_cross_entropy, output_head
from tunesmith.stages.base import causal_lm_loss


@pytest.mark.parametrize("train_head", [False, True])
def test_chunked_linear_cross_entropy_matches_full_logits(train_head):
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=train_head)
    targets = torch.randint(0, 50, (37,))

    plain = F.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
    plain.backward()
    want_h, want_w = hidden.grad.clone(), weight.grad.clone() if train_head else None
    hidden.grad, weight.grad = None, None

    chunked = chunked_linear_cross_entropy(hidden, weight, targets, chunk=8)  # 5 chunks, the last one short
    (chunked * 0.5).backward()  # a scaled upstream gradient must scale both gradients
    torch.testing.assert_close(chunked, plain)
    torch.testing.assert_close(hidden.grad, want_h * 0.5)
    if train_head:
        torch.testing.assert_close(weight.grad, want_w * 0.5)
    else:
        assert weight.grad is None
    with torch.no_grad():  # evaluation: the loss only
        torch.testing.assert_close(chunked_linear_cross_entropy(hidden, weight, targets, chunk=8), plain.detach())


@pytest.mark.parametrize("scale, softcap", [(0.25, None), (1.0, 3.0), (2.0, 5.0)])
def test_scaled_and_soft_capped_heads_match_full_logits(scale, softcap):
    """Granite/Cohere-style logit scaling and Gemma's final soft-capping, gradients of both inputs included."""
    torch.manual_seed(0)
    hidden = torch.randn(21, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (21,))
    logits = hidden @ weight.t() * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    plain = F.cross_entropy(logits, targets, reduction="sum")
    plain.backward()
    want_h, want_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad, weight.grad = None, None
    chunked = chunked_linear_cross_entropy(hidden, weight, targets, chunk=8, scale=scale, softcap=softcap)
    chunked.backward()
    torch.testing.assert_close(chunked, plain)
    torch.testing.assert_close(hidden.grad, want_h)
    torch.testing.assert_close(weight.grad, want_w)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_bf16_hidden_states_get_an_fp32_loss_and_bf16_gradients(scale):
    """Mixed precision: bf16 logits from the matmul, softmax and loss summed in fp32, the gradient handed back in
    bf16 (the chunk buffers of two dtypes). Compared with the same bf16 logits taken through fp32 by hand."""
    torch.manual_seed(0)
    hidden = torch.randn(37, 64, dtype=torch.bfloat16, requires_grad=True)
    weight = (torch.randn(300, 64) * 0.5).to(torch.bfloat16)
    targets = torch.randint(0, 300, (37,))
    logits = (hidden @ weight.t()).float() * scale
    plain = F.cross_entropy(logits, targets, reduction="sum")
    plain.backward()
    want_h = hidden.grad.clone()
    hidden.grad = None
    chunked = chunked_linear_cross_entropy(hidden, weight, targets, chunk=8, scale=scale)
    chunked.backward()
    assert chunked.dtype == torch.float32 and hidden.grad.dtype == torch.bfloat16
    torch.testing.assert_close(chunked, plain.detach(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(hidden.grad.float(), want_h.float(), rtol=2e-2, atol=2e-2)


def test_a_model_whose_logits_are_not_its_head_keeps_the_plain_path(tiny_model_dir):
    """The chunked head is chosen by checking the model's own logits, not a list of model types: a model that
    changes its logits in a way the config does not announce is left to compute them itself."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert output_head(model) is not None
    odd = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    forward = odd.forward

    def shifted(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits = out.logits * 0.5  # an undeclared logit scale
        return out

    odd.forward = shifted
    odd.train()
    assert output_head(odd) is None
    assert all(m.training for m in odd.modules())  # the check ran in eval mode, then gave training back


def _rows(vocab: int) -> list[Example]:
    torch.manual_seed(1)
    rows = []
    for length, prompt in ((9, 4), (14, 6), (6, 2)):
        ids = torch.randint(3, vocab, (length,)).tolist()
        rows.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return rows


def _tiny_lora(tiny_model_dir, method="lora"):
    from transformers import AutoModelForCausalLM

    from tunesmith.model.methods import method_class

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    use_varlen_attention(model)
    model = method_class(method)(lora_rank=4).wrap(model, checkpointing=False)
    for name, p in model.named_parameters():  # LoRA B starts at zero; make every adapter weight matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("method", ["lora", "full"])
def test_chunked_loss_and_gradients_equal_the_plain_path(tiny_model_dir, method):
    model = _tiny_lora(tiny_model_dir, method)
    assert output_head(model) is not None  # the tiny Llama takes the chunked path
    batch = pack_rows(_rows(model.config.vocab_size))
    fast = causal_lm_loss(model, batch)
    fast.loss_sum.backward()
    fast_grads = _grads(model)
    plain = causal_lm_loss(model, batch, chunked=False)
    plain.loss_sum.backward()
    plain_grads = _grads(model)
    assert fast.num_targets == plain.num_targets == batch.num_targets
    torch.testing.assert_close(fast.loss_sum, plain.loss_sum, rtol=1e-5, atol=1e-5)
    assert fast_grads.keys() == plain_grads.keys() and fast_grads
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_torch_compile_trains_to_the_same_losses(tiny_model_dir, alpaca_file, tmp_path):
    from tunesmith.config import load_config
    from tunesmith.train.loop import train

    common = [f"model={tiny_model_dir}", f"dataset={alpaca_file}", "max_steps=2", "per_device_batch_size=2",
              "gradient_accumulation_steps=1", "val_size=0", "cutoff_len=64"]
    plain = train(load_config(None, [*common, f"output_dir={tmp_path / 'plain'}"]), show_progress=False)
    compiled = train(load_config(None, [*common, f"output_dir={tmp_path / 'compiled'}", "torch_compile=true"]),
                     show_progress=False)
    assert compiled.losses == pytest.approx(plain.losses, rel=1e-4)
