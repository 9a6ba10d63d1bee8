"""Every bad input gets one line, exit 2, and no traceback: config values, config files, output folders and run
state, through the real CLI. (Bad data files have their own suite: tests/data/test_bad_data_cli.py.)"""

import os
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

HAS_GPU = torch.cuda.is_available()


def _yaml_not_utf8(tmp: Path) -> str:
    (tmp / "c.yaml").write_bytes(b"max_steps: 1\nsystem: caf\xe9\n")
    return str(tmp / "c.yaml")


def _yaml_folder(tmp: Path) -> str:
    (tmp / "configs").mkdir()
    return str(tmp / "configs")


def _yaml_unreadable(tmp: Path) -> str:
    path = tmp / "c.yaml"
    if os.geteuid() == 0:  # root reads any file: a symlink loop is unreadable for everyone
        path.symlink_to(path)
    else:
        path.write_text("max_steps: 1\n")
        path.chmod(0)
    return str(path)


def _yaml_deep(tmp: Path) -> str:
    (tmp / "c.yaml").write_text("system: " + "[" * 50000 + "]" * 50000 + "\n")
    return str(tmp / "c.yaml")


def _a_file(tmp: Path) -> Path:
    (tmp / "f").write_text("not a folder")
    return tmp / "f"


# id: (config file maker or None, overrides maker, what the one line must say)
CASES = {
    "output_dir-is-a-file": (None, lambda t: [f"output_dir={_a_file(t)}"], "is a file; choose a folder path"),
    "output_dir-below-a-file": (None, lambda t: [f"output_dir={_a_file(t)}/run"], "lies below the file"),
    "yaml-not-utf8": (_yaml_not_utf8, lambda t: [], "c.yaml:2: not UTF-8 text"),
    "yaml-is-a-folder": (_yaml_folder, lambda t: [], "is a folder; give the config's YAML file"),
    "yaml-unreadable": (_yaml_unreadable, lambda t: [], "cannot read the config"),
    "yaml-nested-too-deep": (_yaml_deep, lambda t: [], "c.yaml"),
    "logging_steps=0": (None, lambda t: ["logging_steps=0"], "logging_steps must be >= 1"),
    "seed=-1": (None, lambda t: ["seed=-1"], "seed must be in [0, 2**32)"),
    "seed=2^32": (None, lambda t: ["seed=4294967296"], "seed must be in [0, 2**32)"),
    "num_epochs=nan": (None, lambda t: ["num_epochs=nan", "max_steps=0"], "num_epochs=nan is not a finite number"),
    "num_epochs=inf": (None, lambda t: ["num_epochs=inf", "max_steps=0"], "num_epochs=inf is not a finite number"),
    "val_size=nan": (None, lambda t: ["val_size=nan"], "val_size=nan is not a finite number"),
    "learning_rate=nan": (None, lambda t: ["learning_rate=nan"], "learning_rate=nan is not a finite number"),
    "learning_rate=inf": (None, lambda t: ["learning_rate=inf"], "learning_rate=inf is not a finite number"),
    "device=banana": (None, lambda t: ["device=banana"], "device='banana' is not a device"),
    "device=cuda-without-gpu": (None, lambda t: ["device=cuda"], "no CUDA GPU is visible"),
    "early-stopping-without-evals": (None, lambda t: ["early_stopping_patience=2"],
                                     "early_stopping_patience needs evaluations"),
    "resume-without-checkpoints": (None, lambda t: ["resume=true"], "wrote no checkpoint"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_exit_2(case, tiny_model_dir, alpaca_file, tmp_path):
    if case == "device=cuda-without-gpu" and HAS_GPU:
        pytest.skip("this machine has a GPU")
    make_file, make_overrides, message = CASES[case]
    config = [make_file(tmp_path)] if make_file else []
    base = [f"model={tiny_model_dir}", f"dataset={alpaca_file}", "max_steps=1", f"output_dir={tmp_path / 'run'}"]
    result = run_cli("train", *config, *base, *make_overrides(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()  # nothing else: no library chatter, no progress lines
    assert line.startswith("error: ") and message in line, line


def _run_patched(patch: str, *args: str):
    """The CLI in a fresh process with one failure injected where no real input can produce it on demand."""
    import subprocess

    code = f"import sys\n{patch}\nfrom tunesmith.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])


def _only_error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]] and lines[-1].startswith("error: "), result.stderr[-2000:]  # its own, last line
    assert "Loading weights" not in result.stderr  # library progress bars are not ours to show
    return lines[-1]


def test_disk_full_during_a_checkpoint(tiny_model_dir, alpaca_file, tmp_path):
    patch = ("import errno, torch\n"
             "def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')\n"
             "torch.save = full")
    result = _run_patched(patch, "train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", "max_steps=4",
                          "save_steps=2", f"output_dir={tmp_path / 'run'}", "gradient_accumulation_steps=1")
    line = _only_error_line(result)
    assert "checkpoints/step-2: the disk is full; free space" in line
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))  # no half-written checkpoint left behind


def test_a_damaged_only_checkpoint_is_one_line(tiny_model_dir, alpaca_file, tmp_path):
    args = ["train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", "max_steps=4", "save_steps=2",
            f"output_dir={tmp_path / 'run'}", "gradient_accumulation_steps=1"]
    assert run_cli(*args).returncode == 0
    optimizer = tmp_path / "run" / "checkpoints" / "step-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:64])
    line = _only_error_line(run_cli(*args, "resume=true"))
    assert "step-2 is damaged" in line and "no earlier checkpoint to fall back to" in line


def test_a_diverging_run_stops_with_one_line(tiny_model_dir, alpaca_file, tmp_path):
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", "max_steps=20", "method=full",
                     "learning_rate=1e30", "optimizer=sgd", "max_grad_norm=0", f"output_dir={tmp_path / 'run'}")
    line = _only_error_line(result)
    assert "training diverged" in line and "lower learning_rate" in line
