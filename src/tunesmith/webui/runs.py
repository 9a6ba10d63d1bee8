"""What is in the workspace: past runs with their status and final losses, and the models one can load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.readers import is_data_file_name
from tunesmith.run import checkpoints, is_run
from tunesmith.webui.progress import TrainProgress, read_log
from tunesmith.webui.workspace import EXPORT_FOLDER

FINISHED, RUNNING, INCOMPLETE = "finished", "running", "incomplete"


@dataclass
class RunInfo:
    path: Path
    status: str  # FINISHED | RUNNING | INCOMPLETE (stopped or failed before the end)
    progress: TrainProgress

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def plot(self) -> Path | None:
        plot = self.path / "loss.png"
        return plot if plot.exists() else None


def list_runs(root: str | Path, running: set[Path] | None = None) -> list[RunInfo]:
    """Runs directly under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    running = {p.resolve() for p in (running or set())}
    runs = []
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name.startswith(".") or not is_run(folder):
            continue
        progress = read_log(folder)
        status = RUNNING if folder.resolve() in running else FINISHED if progress.done else INCOMPLETE
        runs.append(RunInfo(folder, status, progress))
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)


def exports(root: str | Path) -> list[Path]:
    """Export folders (safetensors) and GGUF files under ROOT/exports."""
    folder = Path(root) / EXPORT_FOLDER
    if not folder.is_dir():
        return []
    found: list[Path] = []
    for export in sorted(p for p in folder.iterdir() if p.is_dir()):
        found += [export] if (export / "config.json").exists() else sorted(export.glob("*.gguf"))
    return found


def loadable_models(root: str | Path) -> list[str]:
    """Choices for the chat and eval model pickers: the base, finished runs, their checkpoints, exports."""
    choices = ["base"]
    for run in list_runs(root):
        if run.status == FINISHED:
            choices.append(str(run.path))
        choices += [str(c) for c in checkpoints(run.path)]
    choices += [str(e) for e in exports(root)]
    return choices


def data_files(*folders: str | Path) -> list[str]:
    """Dataset and benchmark files found in `folders` (e.g. examples/data, the upload folder)."""
    found = []
    for folder in map(Path, folders):
        if folder.is_dir():
            found += sorted(str(p) for p in folder.iterdir() if is_data_file_name(p.name) and p.is_file())
    return found
