"""The model-family matrix: every family of tests/families/families.py (a tiny random model from the family's own
config class, a tokenizer with the family's special tokens and chat template) through train, chat, serve, merge,
GGUF export, llama.cpp and the Ollama Modelfile - the checks of tests/families/matrix.py, which the test suite runs
too. Writes the table into README.md between its marker comments; every cell comes from a check.

    python3 bench/family_matrix.py           # about two minutes on 2 CPU cores
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checks live with the tests

README = ROOT / "README.md"
BEGIN = "<!-- family-matrix: written by bench/family_matrix.py -->"
END = "<!-- family-matrix: end -->"


def run() -> list[tuple[object, dict[str, str]]]:
    import torch

    from tests.families.families import FAMILIES, save_family_model
    from tests.families.matrix import check_family
    from tunesmith.model.loader import resolve_model

    torch.set_num_threads(1)  # tiny models: a second thread only waits for a busy core
    embedded = Path(resolve_model(None))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            started = time.time()
            work = Path(tmp) / family.slug
            model = save_family_model(work / "model", family, embedded)
            verdict = check_family(family, model, work)
            print(f"{family.name}: {verdict} ({time.time() - started:.0f} s)", file=sys.stderr)
            results.append((family, verdict))
    return results


def table(results) -> str:
    from tests.families.matrix import COLUMNS

    notes: list[str] = []

    def cell(value: str) -> str:
        if value == "ok":
            return "✓"
        notes.append(value)
        return f"✗ ({len(notes)})"

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # a bare | would split the cell

    lines = [row(["family", "model type", "template (`auto` → recognised as)", "stops on", *COLUMNS,
                  "what it needed"]), "|---|---|---|---|" + "---|" * len(COLUMNS) + "---|"]
    for family, verdict in results:
        template = family.template if family.no_template else f"auto → {_recognised(family)}"
        lines.append(row([family.name, f"`{family.model_type}`", template, f"`{family.end_of_turn}`",
                          *(cell(verdict[c]) for c in COLUMNS), family.needs]))
    footnotes = "".join(f"\n({i}) {note}" for i, note in enumerate(notes, 1))
    return "\n".join(lines) + ("\n" + footnotes if footnotes else "")


def _recognised(family) -> str:
    from tests.families.families import family_tokenizer
    from tunesmith.data.templates import recognize
    from tunesmith.model.loader import resolve_model

    fmt = recognize(family_tokenizer(Path(resolve_model(None)), family))
    return fmt.name if fmt else "not recognised"


def write(text: str) -> None:
    readme = README.read_text(encoding="utf-8")
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} markers")
    head, rest = readme.split(BEGIN, 1)
    README.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")


if __name__ == "__main__":
    write(table(run()))
    print(f"wrote the family matrix into {README}")
