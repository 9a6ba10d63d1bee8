"""--format gguf: one GGUF file (f16, bf16, q8_0, q4_0) for llama.cpp, Ollama and LM Studio, plus an Ollama
Modelfile carrying the training template and stop token."""

from __future__ import annotations

import re
from pathlib import Path

from tunesmith.export.formats import GGUF_QUANTS
from tunesmith.export.formats.base import Exporter, ExportOptions, Written
from tunesmith.export.naming import ExportError, public_base_name

DEFAULT_QUANT = "q8_0"


def file_stem(out: Path) -> str:
    return re.sub(r"[^\w.-]+", "-", out.resolve().name).strip("-.") or "model"


class GGUFExporter(Exporter):
    name = "gguf"
    library_name = "gguf"
    options = ("quant",)

    def misplaced(self, option: str) -> str:
        if option == "bits":
            return "--bits applies to --format hf (bitsandbytes); GGUF files quantize with --quant q8_0|q4_0"
        return "--max-shard-size applies to --format hf; a GGUF export is one file"

    def check_options(self, options: ExportOptions) -> None:
        super().check_options(options)
        if options.quant not in (None, *GGUF_QUANTS):
            raise ExportError(f"--quant {options.quant}: choose one of {', '.join(GGUF_QUANTS)}")

    def check_run(self, run, options: ExportOptions) -> None:
        if run.is_reward:
            raise ExportError("reward models (stage=rm) have a score head that llama.cpp cannot run; "
                              "export them with --format hf")

    def write(self, model, tokenizer, run, out: Path, options: ExportOptions, progress: bool) -> Written:
        from tunesmith.export.gguf_vocab import adds_special
        from tunesmith.export.gguf_writer import write_gguf
        from tunesmith.export.modelfile import write_modelfile

        quant, stem = options.quant or DEFAULT_QUANT, file_stem(out)
        gguf = write_gguf(model, tokenizer, run.path, out / f"{stem}.{quant.upper()}.gguf", quant, name=stem,
                          base_name=public_base_name(run), progress=progress)
        write_modelfile(out, gguf.name, tokenizer, runtime_adds_bos=adds_special(tokenizer)[0])
        return Written(gguf=gguf)

    def packaging(self, options: ExportOptions) -> str:
        return f"GGUF, {(options.quant or DEFAULT_QUANT).upper()}, for llama.cpp / Ollama / LM Studio"

    def how_to_load(self, run, where: str, options: ExportOptions, written: Written) -> str:
        name = written.gguf.name if written.gguf else "model.gguf"
        stem = Path(name).stem.split(".")[0]
        return (f"llama.cpp:\n\n```bash\nllama-cli -m {name} -cnv\n```\n\n"
                f"Ollama (the `Modelfile` carries the training chat template and stop token):\n\n"
                f"```bash\nollama create {stem} -f Modelfile\nollama run {stem}\n```\n")
