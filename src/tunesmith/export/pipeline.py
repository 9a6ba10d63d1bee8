"""`tunesmith export RUN_DIR --out DIR`: one function from a run directory to a folder someone else can use.

Order matters for the user's time: every option and the hub token are checked before the (slow) merge, and the
folder is checked for leaked local paths before anything is uploaded.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.export.card import write_card
from tunesmith.export.formats import get_exporter
from tunesmith.export.formats.base import ExportOptions
from tunesmith.export.naming import ExportError
from tunesmith.run import RunDir

log = logging.getLogger(__name__)
MARKER = ".tunesmith-export"  # marks a folder this command wrote, so a re-export may clear it
TEXT_SUFFIXES = {".json", ".md", ".jinja", ".txt", ".yaml", ""}


@dataclass
class ExportResult:
    out: Path
    files: list[Path] = field(default_factory=list)
    gguf: Path | None = None
    url: str | None = None


def _prepare_out(out: Path, run_dir: Path) -> None:
    if out.resolve() == run_dir.resolve():
        raise ExportError(f"--out {out} is the run directory itself; choose a new folder, e.g. {out}/export")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ExportError(f"--out {out} already holds other files; choose an empty or new folder")
        shutil.rmtree(out)  # our own earlier export: start clean so no stale shard survives
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by tunesmith export; the folder is cleared on the next export into it\n")


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
    """Merge the run (or checkpoint) and write it in format `fmt` (an exporter of export/formats), with a model card;
    optionally push the folder to a (private) hub repository."""
    from tunesmith.export.hub import check_repo_id, default_api
    from tunesmith.export.merge import load_merged

    options = ExportOptions(quant, bits, max_shard_size)
    exporter = get_exporter(fmt or ("gguf" if quant else "hf"))
    exporter.check_options(options)
    if public and not push_to_hub:
        raise ExportError("--public only applies together with --push-to-hub user/name")
    api = None
    if push_to_hub:
        check_repo_id(push_to_hub)
        api = hub_api or default_api()  # no token: stop before the merge
    run = open_run(run_dir, base)
    exporter.check_run(run, options)
    out = Path(out)
    _prepare_out(out, run.path)
    model, tokenizer = load_merged(run)
    written = exporter.write(model, tokenizer, run, out, options, progress)
    del model
    write_card(out, run, exporter, options, written, repo_id=push_to_hub)
    check_no_local_paths(out, [run.path, Path(run.base) if run.base and Path(run.base).exists() else None, out])
    result = ExportResult(out, sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")),
                          written.gguf)
    if push_to_hub:
        from tunesmith.export.hub import push_folder

        result.url = push_folder(out, push_to_hub, private=not public, api=api)
    return result


def open_run(run_dir: str | Path, base: str | None) -> RunDir:
    """The run or checkpoint to export, refused in one line when it cannot be (before anything loads)."""
    run = RunDir.open(run_dir, base)
    if run.path is None:
        raise ExportError(f"{run_dir}: run directory not found")
    if base and run.adapter is None:
        raise ExportError(f"{run.path}: --base only applies to adapter runs; this run holds a complete model")
    run.require_loadable()
    if not (run.path / "tokenizer_config.json").exists():
        raise ExportError(f"{run.path}: the run has no tokenizer files; re-run training to finish the run directory")
    return run
