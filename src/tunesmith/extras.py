"""Optional parts of tunesmith and the packages they need: `pip install 'tunesmith[EXTRA]'` (or `[all]`).

The core (training, chat, export) needs none of them; a command that does names the extra in one line instead of
failing with an ImportError deep inside.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tunesmith.errors import ConfigError

EXTRAS = {  # module -> the extra that installs it
    "bitsandbytes": "qlora",
    "fastapi": "serve",
    "uvicorn": "serve",
    "sacrebleu": "eval",
    "rouge_score": "eval",
    "gradio": "webui",
    "deepspeed": "deepspeed",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` for `purpose` (e.g. "tunesmith webui"), or stop with one line naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module.split(".")[0], "all")
        raise ConfigError(f"{purpose} needs {module.split('.')[0]}, which is in the '{extra}' extra: "
                          f"pip install 'tunesmith[{extra}]'") from None
