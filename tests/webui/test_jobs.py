"""Long work runs as the real CLI in a subprocess; a failure comes back as the CLI's one line."""

from __future__ import annotations

import time

from tunesmith.webui.jobs import CliJob


def wait(job: CliJob, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while job.running and time.time() < deadline:
        time.sleep(0.1)
    assert not job.running


def test_a_failed_run_reports_the_clis_error_line(tmp_path):
    job = CliJob(["train", "dataset=missing.jsonl", "learnig_rate=1e-4"], tmp_path / "logs" / "train.log")
    assert job.command == "tunesmith train dataset=missing.jsonl learnig_rate=1e-4"
    wait(job)
    assert job.returncode == 2 and not job.succeeded
    assert job.error_line() == "override: unknown key 'learnig_rate' (did you mean 'learning_rate'?)"
    assert "Traceback" not in job.output()


def test_stop_ends_the_job(tmp_path, tiny_model_dir):
    job = CliJob(["serve", str(tiny_model_dir), "--port", "0"], tmp_path / "serve.log")  # runs until stopped
    time.sleep(1.0)
    assert job.running and job.error_line() is None
    job.stop()
    assert not job.running and job.stopped


def test_output_keeps_the_last_state_of_redrawn_lines(tmp_path):
    job = CliJob(["--help"], tmp_path / "help.log")
    wait(job)
    assert job.succeeded and job.error_line() is None
    job.log_path.write_bytes(b"train:  10%|#  | 1/10\rtrain:  20%|## | 2/10\n\nerror: something broke; fix it\r\n")
    assert job.lines() == ["train:  20%|## | 2/10", "error: something broke; fix it"]
    assert job.tail(1) == "error: something broke; fix it"
