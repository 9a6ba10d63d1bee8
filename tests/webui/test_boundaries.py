"""The Web UI holds no training, evaluation or export logic: it writes configs, runs the CLI, and calls the
library functions `tunesmith chat` and `tunesmith eval --judge human` use."""

from __future__ import annotations

import ast
from pathlib import Path

import tunesmith.webui

WEBUI = Path(tunesmith.webui.__file__).parent
# tunesmith modules the Web UI may use, and why: settings, one-line errors, reading and encoding data (previews,
# through the stages), the registries it lists choices from, the run directory, finding models and tokenizers,
# inference (chat), evaluation's formatting and A/B counting, doctor's report (the Check button), and the shared
# uvicorn-in-a-thread server.
ALLOWED = ("tunesmith.config", "tunesmith.errors", "tunesmith.data", "tunesmith.model.loader", "tunesmith.infer",
           "tunesmith.stages", "tunesmith.run", "tunesmith.extras", "tunesmith.model.methods",
           "tunesmith.export.formats",
           "tunesmith.evaluate.runner", "tunesmith.evaluate.abtest", "tunesmith.evaluate.ab_record",
           "tunesmith.evaluate.abstats",
           "tunesmith.evaluate.benchmarks", "tunesmith.doctor", "tunesmith.webserver", "tunesmith.webui")
ALLOWED_FROM_EVALUATE = {"tunesmith.evaluate.runner": {"format_value", "metric_rows"},
                         "tunesmith.evaluate.ab_record": {"PreferenceRecord", "append_record"},
                         "tunesmith.evaluate.abtest": {"load_prompts"},
                         "tunesmith.evaluate.abstats": {"preferred_model", "single", "summarize"},
                         "tunesmith.evaluate.benchmarks": {"generate_replies"}}


def imports(path: Path) -> list[tuple[str, set[str], int]]:
    """(module, imported names, line) for every import in a file, including those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, set(), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}, node.lineno))
    return found


def test_webui_modules_use_only_the_allowed_tunesmith_modules():
    files = sorted(WEBUI.glob("*.py"))
    assert len(files) > 10
    problems = []
    for path in files:
        for module, names, line in imports(path):
            if module == "tunesmith" or module.startswith("tunesmith."):
                if not module.startswith(ALLOWED):
                    problems.append(f"{path.name}:{line}: imports {module}")
                elif module in ALLOWED_FROM_EVALUATE and not names <= ALLOWED_FROM_EVALUATE[module]:
                    problems.append(f"{path.name}:{line}: imports {sorted(names)} from {module}")
    assert not problems, "training/evaluation/export logic belongs outside webui:\n" + "\n".join(problems)


def test_training_evaluation_and_export_start_the_cli():
    """The tabs start `python -m tunesmith train|eval|export`; they never call those functions in-process."""
    sources = {p.name: p.read_text(encoding="utf-8") for p in WEBUI.glob("*.py")}
    assert 'ctx.start(TRAIN, ["train", str(config_file)])' in sources["train_tab.py"]
    assert "ctx.start(EVAL, args)" in sources["eval_tab.py"] and 'args = ["eval"]' in sources["commands.py"]
    assert "ctx.start(EXPORT, args)" in sources["export_tab.py"] and 'args = ["export"' in sources["commands.py"]
    assert '[sys.executable, "-m", "tunesmith", *args]' in sources["jobs.py"]
    for name, text in sources.items():
        assert "run_eval(" not in text and "export_run(" not in text and "import train" not in text, name

