"""The Exporter interface: options, checks, writer, and what the model card says."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.export.naming import ExportError

# The option flags, as the CLI spells them; an exporter lists the ones it takes.
FLAGS = {"quant": "--quant", "bits": "--bits", "max_shard_size": "--max-shard-size"}


@dataclass
class ExportOptions:
    quant: str | None = None
    bits: int | None = None
    max_shard_size: str | None = None

    def given(self) -> list[str]:
        return [name for name in FLAGS if getattr(self, name)]


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)
    gguf: Path | None = None  # the one GGUF file, for formats that write one


class Exporter:
    name = ""
    library_name = "transformers"  # the hub's library_name for the model card
    options: tuple[str, ...] = ()  # which ExportOptions it takes
    elsewhere = ""  # where an option it does not take belongs (for the one-line error)

    def check_options(self, options: ExportOptions) -> None:
        """Refuse options this format does not take, before any work."""
        for name in options.given():
            if name not in self.options:
                raise ExportError(self.misplaced(name))

    def misplaced(self, option: str) -> str:
        return f"{FLAGS[option]} does not apply to --format {self.name}"

    def check_run(self, run, options: ExportOptions) -> None:
        """Refuse, before the merge, a run this format cannot carry (a tunesmith.run.RunDir)."""

    def write(self, model, tokenizer, run, out: Path, options: ExportOptions, progress: bool) -> Written:
        raise NotImplementedError

    def packaging(self, options: ExportOptions) -> str:
        """How the weights are packaged, for the model card's first line."""
        raise NotImplementedError

    def how_to_load(self, run, where: str, options: ExportOptions, written: Written) -> str:
        """The model card's "How to load" section (markdown)."""
        raise NotImplementedError
