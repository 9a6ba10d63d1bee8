"""Read rows from json / jsonl / csv / parquet / txt files, folders of them, a folder written by datasets'
`save_to_disk`, or a hub dataset, remembering where each row came from.

Every row is returned as `(location, dict)` where location is `path:line` (files with lines) or `path:row N`, so a
bad row anywhere in the pipeline can be reported as exactly the place the user has to open. Decoding a file's bytes
lives in `readers`; this module decides what a `dataset=` entry names.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from tunesmith.data.readers import FILE_SUFFIXES, Row, read_file
from tunesmith.errors import DataError, first_line

__all__ = ["FILE_SUFFIXES", "Row", "read_rows"]
# The hub's repo id rules (owner/name, letters, digits, - _ .), plus an optional split such as train or train[:10%].
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}(:[\w.%+\[\]:-]+)?")


def read_rows(source: str) -> list[Row]:
    try:
        path = Path(source).expanduser()
    except RuntimeError:  # ~someone whose home folder is unknown: take the path literally
        path = Path(source)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except PermissionError:
        raise DataError(f"{source}: permission denied on a folder in this path; make it readable or copy the "
                        "data somewhere you can read") from None
    except (OSError, ValueError) as e:  # name too long, symlink loop, a NUL character in the name
        shown = repr(source) if len(source) <= 200 else repr(source[:200]) + "..."
        raise DataError(f"{shown}: not a usable path ({getattr(e, 'strerror', None) or e}); check the "
                        "path") from None
    if mode is None:
        if source.endswith(FILE_SUFFIXES) or "/" not in source.strip("/"):
            fix = _llamafactory_name(source) or "check the path (relative paths start at the current folder)"
            raise DataError(f"{source}: file not found; {fix}")
        return _read_hub(source)
    if stat.S_ISDIR(mode):
        return _read_folder(path)
    if not stat.S_ISREG(mode):  # a FIFO would block forever, a device would never end
        raise DataError(f"{path}: not a regular file (a pipe, socket or device); save the data to a file and give "
                        "its path")
    rows = read_file(path)
    if not rows:
        raise DataError(f"{path}: the file has no rows; add rows or remove it from the dataset")
    return rows


def _read_folder(path: Path) -> list[Row]:
    if (path / "dataset_dict.json").is_file():  # datasets' DatasetDict.save_to_disk: a folder per split
        if not (path / "train").is_dir():
            splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise DataError(f"{path}: a saved DatasetDict without a 'train' split (it has {', '.join(splits) or 'none'}"
                            f"); give one split's folder, e.g. dataset={path / (splits[0] if splits else 'train')}")
        return _read_saved(path / "train")
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():  # Dataset.save_to_disk
        return _read_saved(path)
    try:
        entries = list(path.iterdir())
    except PermissionError:
        raise DataError(f"{path}: permission denied listing this folder; make it readable (chmod a+rx)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot list this folder ({e.strerror or e}); check the path") from None
    # Hidden files are not data: macOS '._name.jsonl' resource forks and Office '~$name.csv' lock files share the
    # suffix of the file next to them.
    files = sorted(p for p in entries if not p.name.startswith((".", "~$")) and p.suffix.lower() in FILE_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no {', '.join(FILE_SUFFIXES)} files in this folder")
    return [row for f in files for row in read_rows(str(f))]


def _read_saved(path: Path) -> list[Row]:
    """A folder written by datasets' `save_to_disk` (Arrow files and their JSON descriptions, not rows)."""
    try:
        import datasets

        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged or foreign folder; datasets raises many types
        first = first_line(e)
        raise DataError(f"{path}: could not read this saved dataset ({first}); save it again with "
                        "save_to_disk, or export it with to_json") from None
    return [(f"{path}:row {i + 1}", dict(obj)) for i, obj in enumerate(ds)]


def _llamafactory_name(name: str) -> str | None:
    """The fix when `name` is a dataset of LLaMA-Factory's data/dataset_info.json here (as in its YAMLs)."""
    info = Path("data") / "dataset_info.json"
    try:
        entry = json.loads(info.read_text(encoding="utf-8")).get(name) if info.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict):
        return None
    where = Path("data") / entry["file_name"] if isinstance(entry.get("file_name"), str) else entry.get("hf_hub_url")
    return (f"'{name}' is a LLaMA-Factory dataset name ({info}): give dataset={where}, or train from the "
            "LLaMA-Factory YAML itself, which reads its dataset names")


def _read_hub(name: str) -> list[Row]:
    """A dataset on the Hugging Face hub: `owner/name` or `owner/name:split` (works offline once cached)."""
    repo, _, split = name.partition(":")
    if not HUB_NAME.fullmatch(name) or ".." in repo or "--" in repo:
        raise DataError(f"{name}: no such file or folder, and not a hub dataset name (owner/name or "
                        "owner/name:split); check the path")
    from tunesmith.offline import cached_if_offline

    source = cached_if_offline(repo, "dataset")
    if source is None:
        raise DataError(f"{name}: no such file or folder, not in the local hub cache, and the hub cannot be "
                        "reached; download the dataset once with network access, or pass a local file")
    try:
        import datasets

        ds = datasets.load_dataset(source, split=split or "train")
    except Exception as e:  # the hub client raises many types; the user needs the one line
        first = first_line(e)
        raise DataError(f"{name}: could not load the hub dataset ({first}); check the name, your network "
                        "or pass a local file") from None
    return [(f"{name}:row {i + 1}", dict(obj)) for i, obj in enumerate(ds)]
