"""`tunesmith serve`: load the models, build the app, run uvicorn (127.0.0.1 unless --host says otherwise)."""

from __future__ import annotations

import logging

from tunesmith.errors import ConfigError
from tunesmith.infer.loading import LoadedModel, load_for_inference

log = logging.getLogger(__name__)


def load_models(specs: list[str], names: list[str] | None = None, device: str = "auto") -> dict[str, LoadedModel]:
    """Several adapter runs on the same base share one copy of it, each served under its own name."""
    names = names or []
    if len(names) > len(specs or [None]):
        raise ConfigError("serve: more --name values than models")
    shared: dict | None = {} if len(specs) > 1 else None  # one model alone gets its adapter merged (faster)
    models: dict[str, LoadedModel] = {}
    for i, spec in enumerate(specs or [None]):
        loaded = load_for_inference(spec, device, names[i] if i < len(names) else None, shared)
        if loaded.name in models:
            raise ConfigError(f"serve: two models are named '{loaded.name}'; give each a --name")
        models[loaded.name] = loaded
    return models


def serve(specs: list[str], names: list[str], host: str, port: int, api_key: str | None, max_batch: int,
          engine: str = "transformers", device: str = "auto") -> None:
    import uvicorn

    from tunesmith.serve.app import create_app

    if engine == "vllm":
        check_vllm()
    models = load_models(specs, names, device)
    app = create_app(models, api_key, max_batch)
    log.info("serving %s on http://%s:%d/v1%s", ", ".join(models), host, port, " (API key required)" if api_key
             else "")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def check_vllm() -> None:
    import torch

    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ConfigError("serve: --engine vllm needs vLLM (pip install vllm) and a CUDA GPU; "
                          "use the default --engine transformers here") from None
    if not torch.cuda.is_available():
        raise ConfigError("serve: --engine vllm needs a CUDA GPU; use the default --engine transformers here")
    raise ConfigError("serve: the vLLM engine is not wired in yet; use the default --engine transformers")
