"""Export formats (`tunesmith export --format`), by name. An exporter says which options it takes and checks them,
what it refuses before the (slow) merge, how it writes the merged model, and what its model card says about
packaging and loading.

Adding a format is one module with an `Exporter` subclass plus one line in `EXPORTERS`. The table holds import
paths, so listing the names (the CLI's --format choices, the Web UI) imports nothing heavy.
"""

from __future__ import annotations

from tunesmith.export.naming import ExportError
from tunesmith.registry import Registry

EXPORTERS = Registry({
    "hf": "tunesmith.export.formats.hf:HFExporter",
    "gguf": "tunesmith.export.formats.gguf:GGUFExporter",
}, "--format {name}: choose one of {choices}", ExportError)
GGUF_QUANTS = ("f16", "bf16", "q8_0", "q4_0")  # here, not in the writer: the CLI lists them without importing gguf


def register_exporter(name: str, exporter: str | type) -> None:
    EXPORTERS.register(name, exporter)


def get_exporter(name: str):
    return EXPORTERS.load(name)()
