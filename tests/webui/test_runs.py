"""What the Runs tab and the model pickers find under the output root."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tunesmith.webui.runs import FINISHED, INCOMPLETE, RUNNING, data_files, list_runs, loadable_models


def make_run(root: Path, name: str, done: bool, checkpoints: tuple[int, ...] = ()) -> Path:
    run = root / name
    run.mkdir(parents=True)
    lines = [{"step": 1, "max_steps": 2, "loss": 2.0, "eta_s": 1.0, "elapsed_s": 1.0},
             {"step": 2, "max_steps": 2, "eval_loss": 1.5, "elapsed_s": 2.0}]
    if done:
        lines.append({"step": 2, "max_steps": 2, "done": True, "stopped_early": False})
    (run / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for step in checkpoints:
        (run / "checkpoints" / f"step-{step}").mkdir(parents=True)
        (run / "checkpoints" / f"step-{step}" / "trainer_state.json").write_text("{}")  # what makes it complete
    (run / "checkpoints" / ".tmp-step-9").mkdir(parents=True, exist_ok=True)  # an unfinished one: never listed
    return run


def test_runs_with_status_and_final_losses(tmp_path):
    finished = make_run(tmp_path, "a", done=True)
    crashed = make_run(tmp_path, "b", done=False)
    live = make_run(tmp_path, "c", done=False)
    (tmp_path / ".webui").mkdir()
    (tmp_path / "eval").mkdir()  # not a run
    runs = {r.name: r for r in list_runs(tmp_path, running={live})}
    assert set(runs) == {"a", "b", "c"}
    assert (runs["a"].status, runs["b"].status, runs["c"].status) == (FINISHED, INCOMPLETE, RUNNING)
    assert runs["a"].progress.last_loss == 2.0 and runs["a"].progress.last_eval_loss == 1.5
    assert runs["a"].plot is None
    for age, run in ((300, finished), (200, crashed), (100, live)):
        os.utime(run, (time.time() - age, time.time() - age))
    assert [r.name for r in list_runs(tmp_path)] == ["c", "b", "a"]  # newest first
    (finished / "loss.png").write_bytes(b"png")
    assert {r.name: r for r in list_runs(tmp_path)}["a"].plot == finished / "loss.png"
    assert list_runs(tmp_path / "nothing") == []


def test_loadable_models_are_base_finished_runs_checkpoints_and_exports(tmp_path):
    run = make_run(tmp_path, "a", done=True, checkpoints=(10, 2))
    make_run(tmp_path, "b", done=False, checkpoints=(5,))
    merged = tmp_path / "exports" / "a-merged"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text("{}")
    gguf = tmp_path / "exports" / "a-gguf"
    gguf.mkdir()
    (gguf / "a.Q8_0.gguf").write_bytes(b"GGUF")
    (gguf / "Modelfile").write_text("FROM ./a.Q8_0.gguf")
    models = loadable_models(tmp_path)
    assert models[0] == "base"
    assert str(run) in models and str(tmp_path / "b") not in models  # an unfinished run has no adapter to load
    assert models.index(str(run / "checkpoints" / "step-2")) < models.index(str(run / "checkpoints" / "step-10"))
    assert str(tmp_path / "b" / "checkpoints" / "step-5") in models  # its checkpoints are complete
    assert str(merged) in models and str(gguf / "a.Q8_0.gguf") in models
    assert not any(".tmp-" in m for m in models)


def test_data_files(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}")
    (tmp_path / "b.csv").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    assert data_files(tmp_path, tmp_path / "missing") == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.csv")]
