"""A command that needs a missing optional extra says which, in one line (the package is hidden in a subprocess)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_without(module: str, *args: str):
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # `import module` now raises ImportError
            "from tunesmith.cli import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("module, extra, args", [
    ("gradio", "webui", ["webui"]),
    ("fastapi", "serve", ["serve"]),
    ("bitsandbytes", "qlora", ["train", "method=qlora", "max_steps=1"]),
])
def test_missing_extra_is_named(module, extra, args, tiny_model_dir, alpaca_file, tmp_path):
    if args[0] == "train":
        args = [*args, f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={tmp_path / 'r'}"]
    result = run_without(module, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"pip install 'tunesmith[{extra}]'" in line, line
