"""Export formats (`tunesmith export --format`), by name. An exporter says which options it takes and checks them,
what it refuses before the (slow) merge, how it writes the merged model, and what its model card says about
packaging and loading.

Adding a format is one module with an `Exporter` subclass plus one line in `EXPORTERS`. The table holds import
paths, so listing the names (the CLI's --format choices, the Web UI) imports nothing heavy.
"""

from __future__ import annotations

import importlib

from tunesmith.export.naming import ExportError

EXPORTERS: dict[str, str] = {
    "hf": "tunesmith.export.formats.hf:HFExporter",
    "gguf": "tunesmith.export.formats.gguf:GGUFExporter",
}
GGUF_QUANTS = ("f16", "bf16", "q8_0", "q4_0")  # here, not in the writer: the CLI lists them without importing gguf
_loaded: dict[str, type] = {}


def register_exporter(name: str, exporter: str | type) -> None:
    EXPORTERS[name] = exporter if isinstance(exporter, str) else f"{exporter.__module__}:{exporter.__qualname__}"
    if not isinstance(exporter, str):
        _loaded[name] = exporter


def get_exporter(name: str):
    if name not in EXPORTERS:
        raise ExportError(f"--format {name}: choose one of {', '.join(EXPORTERS)}")
    if name not in _loaded:
        module, _, cls = EXPORTERS[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)
    return _loaded[name]()
