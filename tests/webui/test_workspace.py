"""One workspace: every path the page is given resolves inside it, or is refused with one line naming it."""

from __future__ import annotations

import os

import pytest

from tunesmith.config import load_config
from tunesmith.webui.workspace import EXAMPLE_FILES, Workspace, WorkspaceError


@pytest.fixture
def ws(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    workspace.prepare()
    return workspace


def test_relative_paths_start_in_the_workspace(ws):
    assert ws.inside("data/faq.jsonl", "dataset") == ws.root / "data" / "faq.jsonl"
    assert ws.inside(str(ws.root / "a" / "b.yaml"), "config file") == ws.root / "a" / "b.yaml"
    assert ws.inside("a/../b", "x") == ws.root / "b"  # `..` that stays inside is harmless


@pytest.mark.parametrize("escape", ["/etc/passwd", "..", "../ws-sibling/x", "a/../../x", "~/notes.yaml", "~root/x",
                                    "", "   ", "a\0b"])
def test_everything_else_is_refused_in_one_line(ws, escape):
    with pytest.raises(WorkspaceError) as refused:
        ws.inside(escape, "dataset")
    assert len(str(refused.value).splitlines()) == 1 and str(refused.value).startswith("dataset")


def test_a_symlink_out_of_the_workspace_is_outside(ws, tmp_path):
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", ws.root / "link")
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        ws.inside("link/key.txt", "dataset")


def test_names_for_results_stay_in_their_folder(ws):
    assert ws.within(ws.eval_dir, "run-a", "result name") == ws.eval_dir / "run-a"
    for bad in ("../x", "/tmp/x", "", "."):
        with pytest.raises(WorkspaceError):
            ws.within(ws.eval_dir, bad, "result name")


def test_data_sources_are_workspace_files_or_hub_names(ws, tmp_path, monkeypatch):
    assert ws.data_source("examples/data/haneul_faq.jsonl", "dataset") == \
        str(ws.root / "examples" / "data" / "haneul_faq.jsonl")
    assert ws.data_source("HuggingFaceH4/no_robots:train", "dataset") == "HuggingFaceH4/no_robots:train"
    (tmp_path / "home" / "docs" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "home")  # the CLI, started here, would read docs/x as a local folder, not the hub's
    with pytest.raises(WorkspaceError, match="a folder outside the workspace"):
        ws.data_source("docs/x", "dataset")
    with pytest.raises(WorkspaceError, match="outside"):
        ws.data_source("../faq.jsonl", "dataset")


def test_a_config_is_confined_as_a_whole(ws, tmp_path):
    cfg = load_config(None, [f"dataset={tmp_path / 'elsewhere.jsonl'}"])
    with pytest.raises(WorkspaceError, match="dataset .*outside the workspace"):
        ws.confine_config(cfg)
    cfg = load_config(None, ["dataset=[examples/data/haneul_faq.jsonl, up/more.jsonl]", "output_dir=runs/a",
                             "resume=true"])
    confined = ws.confine_config(cfg)
    assert confined.dataset == [str(ws.root / "examples/data/haneul_faq.jsonl"), str(ws.root / "up/more.jsonl")]
    assert (confined.output_dir, confined.resume) == (str(ws.root / "runs" / "a"), True)
    for bad in ([f"output_dir={tmp_path / 'run'}", "overwrite_output_dir=true"], [f"output_dir={ws.root}"],
                ["output_dir=.webui/configs"], [f"resume={tmp_path / 'run' / 'checkpoints' / 'step-5'}"],
                ["val_dataset=../val.jsonl"]):
        with pytest.raises(WorkspaceError):
            ws.confine_config(load_config(None, ["dataset=d.jsonl", *bad]))


def test_config_files_are_yaml_in_the_workspace(ws):
    assert ws.config_file("mine.yaml") == ws.root / "mine.yaml"
    with pytest.raises(WorkspaceError, match="ends in .yaml"):
        ws.config_file("notes.txt")


def test_the_examples_are_copied_in_and_an_edited_copy_is_kept(ws):
    for name in EXAMPLE_FILES:
        assert (ws.examples_dir / name).is_file(), name
    assert ws.quickstart == ws.examples_dir / "quickstart.yaml"
    (ws.examples_dir / "quickstart.yaml").write_text("dataset: mine.jsonl\n")
    ws.prepare()
    assert (ws.examples_dir / "quickstart.yaml").read_text() == "dataset: mine.jsonl\n"
