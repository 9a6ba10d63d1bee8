"""The one folder the Web UI works in: every path it reads or writes resolves inside it.

A page may be opened from another machine, so a name typed into it is never trusted as a path on this host:
relative names start at the workspace, and whatever resolves outside it (an absolute path elsewhere, `..`, `~`, a
symlink leading out) is refused with one line. Training configs are confined as a whole (dataset, val_dataset,
output_dir, resume), so a loaded config file cannot point the run elsewhere either, and `overwrite_output_dir` can
only clear a run inside the workspace.

Models are the exception on purpose: a base model, run, export or .gguf may be anywhere (a GPU box keeps its models
in /models or the hub cache). They are only ever loaded as weights, never shown or copied as text.

The example data shipped with tunesmith (examples/ of the source tree) is copied into WORKSPACE/examples at start, from
a fixed list, so the ready-to-start quickstart reads it from inside the workspace like any other file.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from tunesmith.data.sources import HUB_NAME, is_data_file_name
from tunesmith.errors import TunesmithError

# Folders under the workspace: what the Web UI keeps for itself, evaluations and exports.
UI_FOLDER = ".webui"
EVAL_FOLDER = "eval"
EXPORT_FOLDER = "exports"
EXAMPLES_FOLDER = "examples"
# The example files offered as built-in choices (paths below examples/), copied into the workspace at start.
EXAMPLE_FILES = ("quickstart.yaml", "data/haneul_faq.jsonl", "data/haneul_prefs.jsonl", "data/haneul_about.txt",
                 "benchmarks/haneul_mc.jsonl", "benchmarks/haneul_exact.jsonl")
QUICKSTART = "quickstart.yaml"
CONFIG_SUFFIXES = (".yaml", ".yml")
# resume values that name no path: continue from the latest checkpoint of output_dir, or do not resume.
RESUME_WORDS = ("true", "latest", "false", "")


class WorkspaceError(TunesmithError):
    """A path that would leave the workspace; the message names it and says where paths start."""


def examples_source() -> Path | None:
    """examples/ of the tunesmith source tree (beside src/), else of the current folder; None if neither has it."""
    here = Path(__file__).resolve()
    for folder in (here.parents[3] / EXAMPLES_FOLDER, Path.cwd() / EXAMPLES_FOLDER):
        if (folder / QUICKSTART).is_file():
            return folder
    return None


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(os.path.realpath(Path(root).expanduser()))

    # --- folders
    @property
    def ui_dir(self) -> Path:
        return self.root / UI_FOLDER

    @property
    def configs_dir(self) -> Path:
        return self.ui_dir / "configs"

    @property
    def uploads_dir(self) -> Path:
        return self.ui_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.ui_dir / "logs"

    @property
    def upload_cache_dir(self) -> Path:
        """Where Gradio keeps files as they arrive (GRADIO_TEMP_DIR), before a tab copies them to uploads_dir."""
        return self.ui_dir / "cache"

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_FOLDER

    @property
    def export_dir(self) -> Path:
        return self.root / EXPORT_FOLDER

    @property
    def examples_dir(self) -> Path:
        return self.root / EXAMPLES_FOLDER

    @property
    def quickstart(self) -> Path | None:
        path = self.examples_dir / QUICKSTART
        return path if path.is_file() else None

    @property
    def private_dirs(self) -> list[Path]:
        """Inputs and logs kept by the page: never served as downloads (configs, uploaded data, job logs)."""
        return [self.configs_dir, self.uploads_dir, self.logs_dir]

    def prepare(self) -> None:
        """Create the workspace and copy in the example files it lacks (an edited copy is kept as it is)."""
        self.root.mkdir(parents=True, exist_ok=True)
        source = examples_source()
        if source is None:
            return
        for name in EXAMPLE_FILES:
            target = self.examples_dir / name
            if (source / name).is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, target)

    # --- confinement
    def contains(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def inside(self, value: str | Path, what: str) -> Path:
        """A typed path as the absolute path it names inside the workspace (relative paths start there)."""
        text = str(value).strip()
        if not text:
            raise WorkspaceError(f"{what}: empty; give a path inside the workspace {self.root}")
        if "\0" in text:
            raise WorkspaceError(f"{what}: not a usable path (it holds a NUL character)")
        if text.startswith("~"):
            raise WorkspaceError(f"{what} {text}: ~ is your home folder, outside the workspace {self.root}; give a "
                                 "path inside the workspace (relative paths start there)")
        path = Path(os.path.realpath(self.root / text))  # an absolute `text` replaces the root; symlinks are followed
        if not self.contains(path):
            raise WorkspaceError(f"{what} {text}: outside the workspace {self.root}; give a path inside it (relative "
                                 "paths start there)")
        return path

    def within(self, folder: Path, name: str, what: str) -> Path:
        """A name for a new file or folder directly or deeper below `folder` (an eval result, an export)."""
        path = self.inside(folder / name.strip() if name.strip() else "", what)
        if folder.resolve() not in path.parents:
            raise WorkspaceError(f"{what} {name.strip()}: must be a name inside {folder}, e.g. my-result")
        return path

    def data_source(self, value: str, what: str) -> str:
        """A dataset entry: a file or folder inside the workspace (as an absolute path), or a hub dataset name."""
        text = value.strip()
        if is_hub_name(text) and not (self.root / text).exists():
            if Path(text).exists():  # the CLI would read this local path (relative to its current folder)
                raise WorkspaceError(f"{what} {text}: a folder outside the workspace {self.root}; copy the data "
                                     "into the workspace or upload it")
            return text
        return str(self.inside(text, what))

    def config_file(self, value: str, what: str = "config file") -> Path:
        path = self.inside(value, what)
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise WorkspaceError(f"{what} {value.strip()}: a config file ends in .yaml or .yml")
        return path

    def output_dir(self, value: str) -> Path:
        path = self.inside(value, "output_dir")
        if path == self.root or path == self.ui_dir or self.ui_dir in path.parents:
            raise WorkspaceError(f"output_dir {value.strip()}: give a run folder of its own inside the workspace, "
                                 f"e.g. {self.root / 'my-run'}")
        return path

    def confine_train_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Config values with every path key checked and made absolute inside the workspace (others unchanged)."""
        confined = dict(values)
        for key in ("dataset", "val_dataset"):
            value = values.get(key)
            if isinstance(value, str) and value.strip():
                confined[key] = self.data_source(value, key)
            elif isinstance(value, list):
                confined[key] = [self.data_source(str(v), key) for v in value]
        if "output_dir" in values:
            confined["output_dir"] = str(self.output_dir(str(values["output_dir"] or "")))
        resume = values.get("resume")
        if isinstance(resume, str) and resume.strip().lower() not in RESUME_WORDS:
            confined["resume"] = str(self.inside(resume, "resume"))
        return confined

    def confine_config(self, cfg):
        """A TrainConfig whose paths are all inside the workspace (WorkspaceError otherwise)."""
        names = ("dataset", "val_dataset", "output_dir", "resume")
        confined = self.confine_train_values({name: getattr(cfg, name) for name in names})
        return dataclasses.replace(cfg, **confined)


def is_hub_name(text: str) -> bool:
    """`owner/name[:split]` as the data reader takes it for a hub dataset (never a data file's name)."""
    return bool(HUB_NAME.fullmatch(text)) and ".." not in text and not is_data_file_name(text)
