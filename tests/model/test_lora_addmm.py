"""The fused LoRA update (model/lora_addmm.py) relies on peft calling `lora_variant[name].forward`: these tests fail
loudly if peft stops doing so, or if the fused result, its gradients or a merge drift from peft's own formula."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tunesmith.model.lora_addmm import use_addmm_lora


def adapted(tiny_model_dir, fused: bool, dtype=torch.float32, **lora):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **lora))
    generator = torch.Generator().manual_seed(0)  # the same B in every model built here
    with torch.no_grad():  # B starts at zero, which would hide any difference in the update
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2, generator=generator)
    if fused:
        assert use_addmm_lora(model) == 14  # 7 projections x 2 layers
    return model


def loss_and_grads(model, ids, autocast: bool = False):
    """Loss and gradients; for a fused model, also that its layers took the fused path (not the fallback)."""
    kinds = []
    for module in model.modules():
        if getattr(module, "lora_variant", None):
            module.register_forward_hook(lambda m, args, out: kinds.append(type(out.grad_fn).__name__))
    model.train()
    torch.manual_seed(1)  # the same dropout masks in both runs
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert not kinds or set(kinds) == {"BaddbmmBackward0"}, kinds
    return loss.item(), {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_update_matches_peft(tiny_model_dir, dropout):
    ids = torch.randint(0, 200, (2, 12))
    plain_loss, plain_grads = loss_and_grads(adapted(tiny_model_dir, False, lora_dropout=dropout), ids)
    fused_loss, fused_grads = loss_and_grads(adapted(tiny_model_dir, True, lora_dropout=dropout), ids)
    assert fused_loss == pytest.approx(plain_loss, rel=1e-5)
    assert plain_grads.keys() == fused_grads.keys() and len(plain_grads) == 28
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_fused_update_under_bf16_autocast(tiny_model_dir):
    """The training path: bf16 base, fp32 adapters, autocast. Same rounding budget as peft's formula."""
    ids = torch.randint(0, 200, (1, 16))
    plain_loss, plain_grads = loss_and_grads(adapted(tiny_model_dir, False, torch.bfloat16), ids, autocast=True)
    fused_loss, fused_grads = loss_and_grads(adapted(tiny_model_dir, True, torch.bfloat16), ids, autocast=True)
    assert fused_loss == pytest.approx(plain_loss, rel=2e-2)
    for name, grad in plain_grads.items():
        assert torch.nn.functional.cosine_similarity(fused_grads[name].flatten(), grad.flatten(), dim=0) > 0.99


def test_peft_still_calls_the_variant(tiny_model_dir, monkeypatch):
    model = adapted(tiny_model_dir, True)
    variant = next(v for m in model.modules() for v in getattr(m, "lora_variant", {}).values())
    calls, original = [], type(variant).forward
    monkeypatch.setattr(type(variant), "forward", staticmethod(lambda *a, **k: calls.append(1) or original(*a, **k)))
    with torch.no_grad():
        model(input_ids=torch.randint(0, 200, (1, 5)))
    assert len(calls) == 14, "peft no longer routes LoRA layers through lora_variant: model/lora_addmm.py is inert"


def test_merge_equals_peft(tiny_model_dir):
    plain = adapted(tiny_model_dir, False).merge_and_unload()
    fused = adapted(tiny_model_dir, True).merge_and_unload()
    for (name, a), (_, b) in zip(plain.state_dict().items(), fused.state_dict().items()):
        torch.testing.assert_close(b, a, msg=name)


def test_other_adapters_keep_peft_forward(tiny_model_dir):
    dora = adapted(tiny_model_dir, False, use_dora=True)
    assert use_addmm_lora(dora) == 0  # DoRA has its own variant
    with_bias = adapted(tiny_model_dir, False, lora_bias=True)
    assert use_addmm_lora(with_bias) == 0  # B's bias would be left out of the fused product
