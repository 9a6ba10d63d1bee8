"""Read rows from json / jsonl / csv / parquet / txt files (also gzip/bz2/xz-compressed), folders of them, a folder
written by datasets' `save_to_disk`, or a hub dataset, remembering where each row came from.

A folder may be a dataset repository as the hub lays it out (`git clone`, `hf download --repo-type dataset`): files
in subfolders, named by split (`data/train-00000-of-00001.parquet`, `test.jsonl`). As datasets' own `load_dataset`
does, the split words in file and folder names decide which files are read: training reads the train files, never
the test ones beside them.

Every row is returned as `(location, dict)` where location is `path:line` (files with lines) or `path:row N`, so a
bad row anywhere in the pipeline can be reported as exactly the place the user has to open. Decoding a file's bytes
lives in `readers`; this module decides what a `dataset=` entry names.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import stat
from pathlib import Path

from tunesmith.data.readers import FILE_SUFFIXES, Row, is_data_file_name, read_file
from tunesmith.errors import DataError, first_line
from tunesmith.once import log_once

__all__ = ["FILE_SUFFIXES", "Row", "is_data_file_name", "read_rows"]
log = logging.getLogger(__name__)
# The hub's repo id rules (owner/name, letters, digits, - _ .), plus an optional split such as train or train[:10%].
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}(:[\w.%+\[\]:-]+)?")
# Words of file and folder names that name a split, as datasets' split patterns read them (train-00000.parquet,
# my_test_file.csv, validation/part-1.jsonl), and the splits a reader wanting one takes, best first.
SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test", "eval": "test",
               "evaluation": "test"}
# The hub's shard names: SPLIT-00000-of-00002.parquet.
SHARD = re.compile(r"(.+)-\d{5}-of-\d{5}")
TAKES = {"train": ("train",), "validation": ("validation", "test"), "test": ("test", "validation")}


def read_rows(source: str, split: str = "train") -> list[Row]:
    """The rows `source` names. `split` ("train", "validation" for a validation set, "test" for a benchmark) is the
    part of a folder or hub dataset that holds several to read; a file is read whole whatever its name."""
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
        parts = [part.strip() for part in source.split(",")]
        if len(parts) > 1 and all(parts):  # dataset=a.jsonl,b.jsonl (as LLaMA-Factory lists its datasets)
            return [row for part in parts for row in read_rows(part, split)]
        if glob.has_magic(source):  # dataset='data/*.jsonl', as datasets' data_files take it
            matches = sorted(glob.glob(str(path), recursive=True))
            if matches:
                return [row for match in matches for row in read_rows(match, split)]
            if is_data_file_name(source):
                raise DataError(f"{source}: no file matches this pattern; check the path (relative paths start at "
                                "the current folder)")
        if is_data_file_name(source) or "/" not in source.strip("/"):
            fix = _llamafactory_name(source) or "check the path (relative paths start at the current folder)"
            raise DataError(f"{source}: file not found; {fix}")
        return _read_hub(source, split)
    if stat.S_ISDIR(mode):
        return _read_folder(path, split)
    if not stat.S_ISREG(mode):  # a FIFO would block forever, a device would never end
        raise DataError(f"{path}: not a regular file (a pipe, socket or device); save the data to a file and give "
                        "its path")
    rows = read_file(path)
    if not rows:
        raise DataError(f"{path}: the file has no rows; add rows or remove it from the dataset")
    return rows


def _read_folder(path: Path, split: str = "train") -> list[Row]:
    if (path / "dataset_dict.json").is_file():  # datasets' DatasetDict.save_to_disk: a folder per split
        names = sorted(p.name for p in path.iterdir() if p.is_dir())
        chosen = _choose_split(names, split)
        if chosen is None:
            raise DataError(f"{path}: a saved DatasetDict without a '{split}' split (it has "
                            f"{', '.join(names) or 'none'}); give one split's folder, e.g. "
                            f"dataset={path / (names[0] if names else 'train')}")
        return _read_saved(path / chosen)
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():  # Dataset.save_to_disk
        return _read_saved(path)
    files = _data_files(path)
    if not files:
        raise DataError(f"{path}: no {', '.join(FILE_SUFFIXES)} files in this folder or its subfolders")
    return [row for f in _split_files(path, files, split) for row in read_rows(str(f))]


def _data_files(path: Path) -> list[Path]:
    """The data files of a folder: those in it, or, when it holds none, those in its subfolders (a hub dataset
    repository keeps them in data/ or in a folder per configuration). Hidden files and folders are not data: .git,
    macOS '._name.jsonl' resource forks and Office '~$name.csv' lock files share the suffix of the file they shadow."""
    def visible(name: str) -> bool:
        return not name.startswith((".", "~$"))

    def unlisted(e: OSError) -> DataError:
        if isinstance(e, PermissionError):
            return DataError(f"{e.filename or path}: permission denied listing this folder; make it readable "
                             "(chmod a+rx)")
        return DataError(f"{e.filename or path}: cannot list this folder ({e.strerror or e}); check the path")

    try:
        top = [p for p in path.iterdir() if visible(p.name) and is_data_file_name(p.name) and p.is_file()]
    except OSError as e:
        raise unlisted(e) from None
    if top:
        return sorted(top)
    def stop(e: OSError):
        raise unlisted(e)

    found = []
    for folder, subfolders, names in os.walk(path, onerror=stop):
        subfolders[:] = sorted(d for d in subfolders if visible(d))  # never descend into .git
        found += [Path(folder) / n for n in names if visible(n) and is_data_file_name(n)]
    return sorted(found)


def _split_files(folder: Path, files: list[Path], split: str) -> list[Path]:
    """The files of `split` when names say which split each file holds; all of them when none does. Training without
    train-named files takes the unnamed ones (alpaca_data.json beside eval.jsonl)."""
    named = {f: _split_of(f.relative_to(folder)) for f in files}
    present = sorted({s for s in named.values() if s})
    wanted = _choose_split(present, split)
    if wanted is None and present and not (split == "train" and None in named.values()):
        kinds = f"{', '.join(present)} split{'s' * (len(present) > 1)}"
        raise DataError(f"{folder}: its files are named for the {kinds} and none for {split} "
                        f"({_names(folder, files)}); give the file to use, e.g. dataset={files[0]}")
    chosen = [f for f in files if named[f] == wanted]  # wanted None: the files no split word names
    left = [f for f in files if f not in chosen]
    if left:
        log_once(log, f"{folder}: reading {_names(folder, chosen)}; left out {_names(folder, left)}"
                      + (" (val_dataset= evaluates on a validation or test split)" if split == "train" else ""))
    splits = sorted({m[1] for f in chosen if (m := SHARD.fullmatch(f.name.split(".")[0]))})
    if len(splits) > 1:  # ultrafeedback_binarized: train_prefs, train_sft and train_gen hold the same prompts
        raise DataError(f"{folder}: {len(splits)} {split} splits ({', '.join(splits)}); give the files of one, e.g. "
                        f"dataset={next(f for f in chosen if f.name.startswith(splits[0] + '-'))}")
    parents = sorted({f.parent for f in chosen})
    if len(parents) > 1:  # gsm8k's main/ and socratic/: one dataset's configurations, never meant to be mixed
        raise DataError(f"{folder}: data files in {len(parents)} folders ({_names(folder, parents)}), likely separate "
                        f"configurations of the dataset; give one, e.g. dataset={parents[0]}, or list those to mix")
    return chosen


def _split_of(relative: Path) -> str | None:
    """The split a file's name, or else its nearest folder's name, says it holds."""
    *folders, name = relative.parts
    for part in (name.split(".")[0], *reversed(folders)):
        for word in re.findall(r"[a-z]+", part.lower()):
            if word in SPLIT_WORDS:
                return SPLIT_WORDS[word]
    return None


def _choose_split(names: list[str], split: str) -> str | None:
    by_kind = {SPLIT_WORDS.get(name.lower(), name.lower()): name for name in names}
    return next((by_kind[kind] for kind in TAKES.get(split, (split,)) if kind in by_kind), None)


def _names(folder: Path, paths: list[Path], limit: int = 3) -> str:
    shown = [str(p.relative_to(folder)) for p in paths[:limit]]
    return ", ".join(shown) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


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


def _read_hub(name: str, wanted: str = "train") -> list[Row]:
    """A dataset on the Hugging Face hub: `owner/name` or `owner/name:split` (works offline once cached). Without a
    split, the one `wanted` names, or its stand-in (TAKES)."""
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

        ds = datasets.load_dataset(source, split=split or (wanted if wanted == "train" else None))
    except Exception as e:  # the hub client raises many types; the user needs the one line
        first = first_line(e)
        raise DataError(f"{name}: could not load the hub dataset ({first}); check the name, your network "
                        "or pass a local file") from None
    if isinstance(ds, datasets.DatasetDict):
        chosen = _choose_split(list(ds), wanted)
        if chosen is None:
            raise DataError(f"{name}: no {wanted} split (it has {', '.join(ds)}); name one: {repo}:{next(iter(ds))}")
        ds = ds[chosen]
    return [(f"{name}:row {i + 1}", dict(obj)) for i, obj in enumerate(ds)]
