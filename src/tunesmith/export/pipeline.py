"""`tunesmith export RUN_DIR --out DIR`: one function from a run directory to a folder someone else can use.

Order matters for the user's time: every option and the hub token are checked before the (slow) merge, and the
folder is checked for leaked local paths before anything is uploaded.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.export.card import write_card
from tunesmith.export.run import ExportError, read_run

log = logging.getLogger(__name__)
MARKER = ".tunesmith-export"  # marks a folder this command wrote, so a re-export may clear it
DEFAULT_SHARD = "5GB"
TEXT_SUFFIXES = {".json", ".md", ".jinja", ".txt", ".yaml", ""}


@dataclass
class ExportResult:
    out: Path
    files: list[Path] = field(default_factory=list)
    gguf: Path | None = None
    url: str | None = None


def _check_options(fmt: str, quant: str | None, bits: int | None, max_shard_size: str | None,
                   push_to_hub: str | None, public: bool) -> None:
    if fmt not in ("hf", "gguf"):
        raise ExportError(f"--format {fmt}: choose hf or gguf")
    if fmt == "gguf" and bits:
        raise ExportError("--bits applies to --format hf (bitsandbytes); GGUF files quantize with --quant q8_0|q4_0")
    if fmt == "hf" and quant:
        raise ExportError("--quant applies to --format gguf; for a quantized Hugging Face checkpoint use --bits 4|8")
    if fmt == "gguf" and max_shard_size:
        raise ExportError("--max-shard-size applies to --format hf; a GGUF export is one file")
    if public and not push_to_hub:
        raise ExportError("--public only applies together with --push-to-hub user/name")


def _prepare_out(out: Path, run_dir: Path) -> None:
    if out.resolve() == run_dir.resolve():
        raise ExportError(f"--out {out} is the run directory itself; choose a new folder, e.g. {out}/export")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ExportError(f"--out {out} already holds other files; choose an empty or new folder")
        shutil.rmtree(out)  # our own earlier export: start clean so no stale shard survives
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by tunesmith export; the folder is cleared on the next export into it\n")


def _file_stem(out: Path) -> str:
    return re.sub(r"[^\w.-]+", "-", out.resolve().name).strip("-.") or "model"


def check_no_local_paths(out: Path, paths: list[Path]) -> None:
    """A pushed folder must not reveal where things live on this machine (user names, project layout)."""
    needles = {str(p.resolve()).encode() for p in paths if p is not None}
    home = str(Path.home())
    if len(home) > 1:
        needles.add(home.encode())
    for path in out.iterdir():
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name == "Modelfile"):
            data = path.read_bytes()
            leaked = [n for n in needles if n in data]
            if leaked:
                raise ExportError(f"{path.name} contains the local path {leaked[0].decode()}; not publishing it "
                                  "(please report this as a tunesmith bug)")


def export_run(run_dir: str | Path, out: str | Path, *, fmt: str | None = None, quant: str | None = None,
               bits: int | None = None, max_shard_size: str | None = None, push_to_hub: str | None = None,
               public: bool = False, base: str | None = None, hub_api=None, progress: bool = True) -> ExportResult:
    """Merge the run and write it as safetensors (optionally 4/8-bit) or GGUF + Modelfile, with a model card;
    optionally push the folder to a (private) hub repository."""
    from tunesmith.export.hub import check_repo_id, default_api
    from tunesmith.export.merge import check_complete, load_merged, parse_size, save_hf

    fmt = fmt or ("gguf" if quant else "hf")
    _check_options(fmt, quant, bits, max_shard_size, push_to_hub, public)
    if max_shard_size:
        parse_size(max_shard_size)  # a typo fails now, not after the merge
    api = None
    if push_to_hub:
        check_repo_id(push_to_hub)
        api = hub_api or default_api()  # no token: stop before the merge
    info = read_run(run_dir, base)
    if fmt == "gguf" and info.is_reward:
        raise ExportError("reward models (stage=rm) have a score head that llama.cpp cannot run; "
                          "export them with --format hf")
    if bits == 4:  # before the merge: a shape bitsandbytes cannot pack fails in seconds, not after minutes
        from tunesmith.model.loader import check_quantizable

        check_quantizable(info.base or str(info.path), "score" if info.is_reward else "causal")
    out = Path(out)
    _prepare_out(out, info.path)
    model, tokenizer = load_merged(info)
    result = ExportResult(out)
    if fmt == "hf":
        if bits:
            from tunesmith.export.quantize import save_bnb

            save_bnb(model, tokenizer, out, bits, max_shard_size or DEFAULT_SHARD, info.is_reward)
        else:
            save_hf(model, tokenizer, out, max_shard_size or DEFAULT_SHARD)
        check_complete(out)
    else:
        from tunesmith.export.gguf_vocab import adds_special
        from tunesmith.export.gguf_writer import write_gguf
        from tunesmith.export.modelfile import write_modelfile

        quant = quant or "q8_0"
        stem = _file_stem(out)
        result.gguf = write_gguf(model, tokenizer, info.path, out / f"{stem}.{quant.upper()}.gguf", quant,
                                 name=stem, base_name=info.base_name, progress=progress)
        write_modelfile(out, result.gguf.name, tokenizer, runtime_adds_bos=adds_special(tokenizer)[0])
    del model
    write_card(out, info, fmt=fmt, quant=quant, bits=bits, gguf_name=result.gguf.name if result.gguf else None,
               repo_id=push_to_hub)
    check_no_local_paths(out, [info.path, Path(info.base) if info.base and Path(info.base).exists() else None,
                               out])
    result.files = sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    if push_to_hub:
        from tunesmith.export.hub import push_folder

        result.url = push_folder(out, push_to_hub, private=not public, api=api)
    return result
