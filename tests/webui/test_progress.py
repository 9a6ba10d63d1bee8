"""Reading trainer_log.jsonl (the format tunesmith/train/monitor.py writes) into the progress bar and loss chart."""

from __future__ import annotations

import json
import os
import time

from tunesmith.webui.progress import format_duration, loss_frame, parse_log, progress_html, read_log

LINES = [
    {"step": 0, "max_steps": 10, "eval_loss": 3.0, "elapsed_s": 0.5},
    {"step": 1, "max_steps": 10, "epoch": 0.1, "loss": 2.5, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 100.0,
     "samples_per_s": 2.0, "elapsed_s": 1.0, "eta_s": 9.0},
    {"step": 2, "max_steps": 10, "epoch": 0.2, "loss": 2.25, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 100.0,
     "samples_per_s": 2.0, "elapsed_s": 2.0, "eta_s": 8.0},
    {"step": 2, "max_steps": 10, "eval_loss": 2.75, "elapsed_s": 2.5},
    {"step": 2, "warning": "eval loss rose 3 evaluations in a row"},
]


def test_train_eval_and_warning_lines():
    p = parse_log([json.dumps(r) for r in LINES])
    assert (p.step, p.max_steps, p.eta_s, p.elapsed_s) == (2, 10, 8.0, 2.0)
    assert p.train == [(1, 2.5), (2, 2.25)] and p.evals == [(0, 3.0), (2, 2.75)]
    assert p.warning.startswith("eval loss rose") and not p.done
    assert p.fraction == 0.2 and p.last_loss == 2.25 and p.last_eval_loss == 2.75


def test_a_half_written_last_line_is_skipped_and_done_is_read():
    done = {"step": 10, "max_steps": 10, "done": True, "stopped_early": True, "train_runtime_s": 12.0}
    p = parse_log([json.dumps(LINES[1]), '{"step": 3, "max_st', json.dumps(done)])
    assert p.done and p.stopped_early and p.step == 10 and p.eta_s == 0.0
    assert p.train == [(1, 2.5)]


def test_read_log_ignores_a_previous_runs_log(tmp_path):
    (tmp_path / "trainer_log.jsonl").write_text(json.dumps(LINES[1]) + "\n")
    old = time.time() - 100
    os.utime(tmp_path / "trainer_log.jsonl", (old, old))
    assert read_log(tmp_path).step == 1
    assert read_log(tmp_path, newer_than=time.time() - 10).step == 0
    assert read_log(tmp_path / "missing").train == []


def test_loss_frame_has_numeric_steps_and_one_series_per_curve():
    frame = loss_frame(parse_log([json.dumps(r) for r in LINES]), "en")
    assert list(frame.columns) == ["step", "loss", "series"]
    assert str(frame["step"].dtype) == "int64"
    assert sorted(set(frame["series"])) == ["eval loss", "train loss"]
    assert str(loss_frame(parse_log([]), "ko")["step"].dtype) == "int64"  # the empty chart too


def test_progress_html_shows_step_losses_eta_and_warning():
    p = parse_log([json.dumps(r) for r in LINES])
    shown = progress_html(p, "en", "train.state_running")
    assert "width:20%" in shown and "step 2/10" in shown and "loss 2.2500" in shown
    assert "eval loss 2.7500" in shown and "ETA 0:08" in shown and "eval loss rose" in shown
    assert "학습 중" in progress_html(p, "ko", "train.state_running")


def test_format_duration():
    assert format_duration(None) == "-"
    assert format_duration(65.4) == "1:05"
    assert format_duration(3725) == "1:02:05"
