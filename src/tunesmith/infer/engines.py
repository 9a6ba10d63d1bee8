"""The engines `tunesmith serve` can decode with, in one table: name -> how to load models for it. The CLI takes its
choices (and its help text) from here, so a new engine is one small module and one line below.

Every engine returns served models with the attributes infer.loading.LoadedModel has (name, tokenizer, template,
engine, context_length, activate, encode_chat, encode_text), so the server, its batching, errors and metrics are
the same whichever decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tunesmith.errors import ConfigError


@dataclass
class EngineChoice:
    load: Callable  # (specs, names, device, rows, dtype, threads) -> {name: served model}
    help: str
    listed: bool = True  # shown in --help; vLLM stays out of it until it has run on a GPU


def load_transformers(specs: list[str], names: list[str], device: str, rows: int, dtype: str,
                      threads: int | None = None) -> dict:
    """Several adapter runs on the same base share one copy of it, each served under its own name."""
    from tunesmith.infer.loading import load_for_inference

    shared: dict | None = {} if len(specs) > 1 else None  # one model alone gets its adapter merged (faster)
    models: dict = {}
    for i, spec in enumerate(specs or [None]):
        loaded = load_for_inference(spec, device, names[i] if i < len(names) else None, shared)
        if loaded.name in models:
            raise ConfigError(f"serve: two models are named '{loaded.name}'; give each a --name")
        loaded.engine.use(dtype)
        try:
            loaded.engine.backend  # built now: a dtype this model cannot use is one line at start, not a failed request
        except ValueError as e:
            raise ConfigError(f"serve: {loaded.name}: {e}") from None
        models[loaded.name] = loaded
    return models


def load_llamacpp(specs: list[str], names: list[str], device: str, rows: int, dtype: str,
                  threads: int | None = None) -> dict:
    from tunesmith.infer import llamacpp

    if device not in ("auto", "cpu"):
        raise ConfigError("serve: --engine llamacpp runs on the CPU here (a CPU build of llama-cpp-python)")
    if dtype != "auto":
        raise ConfigError("serve: --dtype is for --engine transformers; a GGUF file carries its own quantization")
    models: dict = {}
    for i, spec in enumerate(specs or [None]):
        loaded = llamacpp.load(spec, names[i] if i < len(names) else None, rows, threads)
        if loaded.name in models:
            raise ConfigError(f"serve: two models are named '{loaded.name}'; give each a --name")
        models[loaded.name] = loaded
    return models


def refuse_vllm(*_args) -> dict:
    raise ConfigError("serve: --engine vllm needs vLLM and a CUDA GPU, and is not wired in yet; use --engine "
                      "transformers (or llamacpp for .gguf files)")


ENGINES: dict[str, EngineChoice] = {
    "transformers": EngineChoice(load_transformers, "the model's own weights in PyTorch (any model, LoRA adapters)"),
    "llamacpp": EngineChoice(load_llamacpp, ".gguf files through llama.cpp (pip install 'tunesmith[llamacpp]')"),
    "vllm": EngineChoice(refuse_vllm, "vLLM on a CUDA GPU", listed=False),
}


def listed() -> list[str]:
    return [name for name, choice in ENGINES.items() if choice.listed]


def pick(engine: str, specs: list[str]) -> str:
    """`auto`: llama.cpp for .gguf files when llama-cpp-python is installed (one stream decodes about twice as fast
    there as on our bf16 path, see BENCHMARKS.md), else transformers. The embedded model stays on transformers, so
    `tunesmith chat` and `serve` give it the same answers."""
    if engine == "auto":
        from tunesmith.infer import llamacpp

        ggufs = bool(specs) and all(str(spec).endswith(".gguf") for spec in specs)
        return "llamacpp" if ggufs and llamacpp.installed() else "transformers"
    if engine not in ENGINES:
        raise ConfigError(f"serve: unknown engine '{engine}'; choose one of {', '.join(['auto', *listed()])}")
    return engine


def load(engine: str, specs: list[str], names: list[str], device: str = "auto", rows: int = 16,
         dtype: str = "auto", threads: int | None = None) -> dict:
    """`threads`: CPU threads for decoding (torch and llama.cpp); None = their defaults (every core)."""
    if len(names) > len(specs or [None]):
        raise ConfigError("serve: more --name values than models")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return ENGINES[pick(engine, specs)].load(specs, names, device, rows, dtype, threads)
