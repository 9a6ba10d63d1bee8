"""The parts of a loaded model that training addresses by name: its language model, that model's repeated decoder
layers, and - in a multimodal model such as Gemma 3 (4B and up) - the vision or audio towers a text-only run never
runs. One owner, so freeze, FSDP and the adapters agree on which layers are the language model's: the first `layers`
list in a Gemma 3 is its vision encoder's."""

from __future__ import annotations

import torch


def _unwrapped(model):
    """The transformers model inside peft and DDP/FSDP wrappers."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(model, "module", model) if not hasattr(model, "config") else model


def language_model(model):
    """The decoder stack that reads the text: transformers' get_decoder() where it has one (a multimodal model
    answers with its language model), else the model itself."""
    inner = _unwrapped(model)
    try:
        decoder = inner.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        decoder = None
    return decoder if isinstance(decoder, torch.nn.Module) else inner


def decoder_layers(model) -> list[torch.nn.Module]:
    """The language model's repeated blocks, in order; empty when it has no `layers` (or GPT-style `h`) list."""
    for module in language_model(model).modules():
        layers = getattr(module, "layers", None) or getattr(module, "h", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return list(layers)
    return []


def unused_by_text(model) -> list[str]:
    """Names of the top-most modules that text never passes through: a multimodal model's towers and projectors
    (everything but its language model and output head). Empty for a text-only model. Parameters there would get no
    gradient: as trainable weights they only cost optimizer memory, and DDP stops on them ("did not receive grad")."""
    inner = _unwrapped(model)
    config = inner.config
    if not hasattr(config, "get_text_config") or config.get_text_config() is config:
        return []
    names = {id(m): n for n, m in inner.named_modules()}
    kept = [names[id(m)] for m in (language_model(inner), inner.get_output_embeddings()) if id(m) in names]
    unused: list[str] = []

    def walk(prefix: str, module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if path in kept:
                continue
            if any(k.startswith(path + ".") for k in kept):
                walk(path + ".", child)
            elif any(True for _ in child.parameters()):
                unused.append(path)

    walk("", inner)
    return unused
