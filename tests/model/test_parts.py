"""Which layers are the language model's: in a vision-language model (Gemma 3 4B and up, as AutoModelForCausalLM
loads it) the first `layers` list is the vision encoder's, and text rows never reach the vision tower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def vision_language(embedded_dir):
    from transformers import AutoModelForCausalLM

    from tests.families.families import BY_SLUG, family_config, family_tokenizer

    family = BY_SLUG["gemma3vl"]
    config = family_config(family, family_tokenizer(embedded_dir, family))
    return lambda: AutoModelForCausalLM.from_config(config)


def trained(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_the_towers_are_found_and_a_text_model_has_none(vision_language, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tunesmith.model.parts import decoder_layers, language_model, unused_by_text

    model = vision_language()
    assert unused_by_text(model) == ["model.vision_tower", "model.multi_modal_projector"]
    assert language_model(model) is model.model.language_model
    assert decoder_layers(model) == list(model.model.language_model.layers)
    text = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert unused_by_text(text) == [] and decoder_layers(text) == list(text.model.layers)


def test_freeze_trains_the_language_models_last_layers(vision_language):
    """It trained the vision encoder's last layer before: a text run whose trainable weights got no gradient."""
    from tunesmith.model.methods.freeze import FreezeMethod

    model = FreezeMethod(freeze_layers=1).wrap(vision_language(), checkpointing=False)
    last = len(model.model.language_model.layers) - 1
    assert trained(model) and all(n.startswith(f"model.language_model.layers.{last}.") for n in trained(model))


@pytest.mark.parametrize("method", ["full", "lora"])
def test_full_and_adapters_leave_the_vision_tower_alone(vision_language, method):
    """Weights that get no gradient cost optimizer memory and stop DDP ("did not receive grad")."""
    from tunesmith.model.methods.full import FullMethod
    from tunesmith.model.methods.lora import LoraMethod

    wrap = FullMethod() if method == "full" else LoraMethod(lora_rank=4, lora_alpha=8)
    model = wrap.wrap(vision_language(), checkpointing=False)
    names = trained(model)
    assert names and not any("vision_tower" in n or "multi_modal_projector" in n for n in names)
    assert any("language_model.layers.0.self_attn.q_proj" in n for n in names)
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "a trained weight unused"
