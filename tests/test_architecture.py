"""The layering, pinned: which tunesmith package may import which, no cycles, nothing below `train/` imports it,
the Web UI never imports training, export or serving code, and listing choices imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import tunesmith

SRC = Path(tunesmith.__file__).parent
# package -> the packages it may import. Read bottom-up: data and model know nothing of training; stages (what a
# stage is) sit below train/ and the Web UI; run (the run directory) is shared by training and every consumer.
ALLOWED = {
    "errors": set(),
    "registry": set(),
    "webserver": {"errors"},  # uvicorn in a thread, for serve and the Web UI
    "cpu": set(),  # the CPU's instruction-set flags
    "kernel_caches": {"cpu"},  # the bound on torch's CPU kernel caches, set by every process that trains or decodes
    "extras": {"errors"},
    "once": set(),  # log lines said once per process
    "offline": {"once"},  # hub ids when the hub cannot be reached: for model and dataset ids and hub uploads
    "data": {"errors", "offline", "once"},
    "model": {"errors", "cpu", "extras", "data", "registry", "offline"},
    "stages": {"errors", "data", "model", "registry", "once"},
    "llamafactory": {"errors", "data", "once"},  # LLaMA-Factory's YAML and dataset_info.json, read for config
    "llamafactory_v1": {"errors", "once", "llamafactory"},  # its v1 configs and dataset YAMLs (+ Translation)
    "config": {"errors", "data", "model", "stages", "llamafactory", "llamafactory_v1"},  # + template, method, stage
    "run": {"errors", "config", "model", "llamafactory"},  # a config file named as a model
    "infer": {"errors", "data", "model", "stages", "run", "kernel_caches"},
    "train": {"errors", "extras", "config", "data", "model", "stages", "run", "kernel_caches"},
    "evaluate": {"errors", "extras", "data", "model", "stages", "run", "infer"},
    "export": {"errors", "extras", "data", "model", "stages", "run", "registry", "offline"},
    "serve": {"errors", "extras", "data", "model", "run", "infer", "webserver"},
    # Checks a training config before training, with train's own memory planner: above train, beside the CLI.
    "doctor": {"errors", "extras", "config", "data", "model", "stages", "run", "train"},
    # The Train tab's Check button shows doctor's report; training itself only ever runs in a CLI subprocess.
    "webui": {"errors", "extras", "config", "data", "model", "stages", "run", "infer", "evaluate", "doctor",
              "webserver"},
}
TOP = {"cli", "__main__", "tunesmith"}  # the entry points may import anything
# The registries' name tables: the Web UI lists its choices from them (they import nothing heavy, see below).
REGISTRIES = {"tunesmith.stages", "tunesmith.model.methods", "tunesmith.export.formats", "tunesmith.data.templates"}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tunesmith"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[tuple[str, str]]]:
    """package -> {(importing module, imported module)} for every tunesmith import, those inside functions too."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        source = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                if name.startswith("tunesmith.") and package_of(name) != package_of(source):
                    found[package_of(source)].add((source, name))
    return found


def test_every_import_follows_the_layers():
    found = imports()
    assert set(found) - TOP <= set(ALLOWED), f"add the new package to ALLOWED: {set(found) - TOP - set(ALLOWED)}"
    wrong = sorted(f"{src} imports {dst}" for pkg, edges in found.items() if pkg not in TOP
                   for src, dst in edges if package_of(dst) not in ALLOWED[pkg]
                   and not (pkg == "webui" and dst in REGISTRIES))
    assert not wrong, "\n".join(wrong)


def test_the_layers_have_no_cycle():
    graph = {pkg: {package_of(dst) for _, dst in edges} for pkg, edges in imports().items() if pkg not in TOP}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for pkg in graph:
        if pkg not in state:
            visit(pkg, [pkg])


def test_nothing_below_train_imports_it_and_the_webui_imports_no_training_export_or_serving():
    found = imports()
    for pkg, edges in found.items():
        if pkg in TOP or pkg in ("train", "doctor"):
            continue
        assert not [e for e in edges if package_of(e[1]) == "train"], f"{pkg} imports train/"
    assert not [e for e in found["webui"] if package_of(e[1]) in ("train", "export", "serve")
                and e[1] not in REGISTRIES]


def test_config_and_the_registries_import_no_torch():
    code = ("import sys, tunesmith.config, tunesmith.stages, tunesmith.model.methods, tunesmith.export.formats, "
            "tunesmith.data.templates; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
