"""Human blind A/B in the page: two models answer the same prompts, a person picks the better answer of each pair
(shown as A and B in a random order per pair), and which model was which is revealed at the end.

The pieces are `tunesmith eval --ab ... --judge human`'s own: prompts from `load_prompts`, greedy answers from
`generate_replies` (one model in memory at a time), the seeded A/B order, and the counting (`preferred_model`,
`single`, `summarize`: wins, ties, losses and a win rate with its 95% interval for model 2 against model 1).
The only state is the plain dict below, kept per browser session.
"""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError
from tunesmith.evaluate.ab_record import PreferenceRecord, append_record
from tunesmith.evaluate.abstats import preferred_model, single, summarize

A, B, TIE = "A", "B", "tie"
MAX_NEW_TOKENS = 128


def prompts_from(typed: str, path: str | None, limit: int) -> list[dict[str, str | None]]:
    """Prompts typed one per line, then those of a file (any format `tunesmith eval --ab` reads)."""
    from tunesmith.evaluate.abtest import load_prompts

    prompts: list[dict[str, str | None]] = [{"text": line.strip(), "system": None}
                                            for line in typed.splitlines() if line.strip()]
    if path:
        prompts += [{"text": p.text, "system": p.system} for p in load_prompts(path)]
    if not prompts:
        raise DataError("A/B: no prompts; type some (one per line) or pick a file")
    return prompts[:limit]


def answer_all(spec: str, prompts: list[dict[str, str | None]], max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy answers of one model, loaded for this and released afterwards."""
    from tunesmith.evaluate.benchmarks import generate_replies
    from tunesmith.infer.loading import load_for_inference

    loaded = load_for_inference(spec, int8=False)  # both sides decoded alike, whatever file they came from
    conversations = [([{"role": "system", "content": p["system"]}] if p["system"] else [])
                     + [{"role": "user", "content": p["text"]}] for p in prompts]
    answers = generate_replies(loaded, conversations, max_new_tokens)
    del loaded
    gc.collect()
    return answers


def new_session(labels: tuple[str, str], prompts: list[dict[str, str | None]], answers_1: list[str],
                answers_2: list[str], seed: int | None = None, file: str | None = None) -> dict[str, Any]:
    """`shown_as_a[i]` is the model (1 or 2) whose answer to prompt i is shown as A (on the left). `file`: the
    preferences file each choice is appended to, in the terminal's format (`tunesmith eval --judge human
    --ab-file FILE` resumes it)."""
    rng = random.Random(seed)
    return {"labels": list(labels), "prompts": [p["text"] for p in prompts], "answers": [answers_1, answers_2],
            "shown_as_a": [rng.choice((1, 2)) for _ in prompts], "verdicts": [], "file": file}


def current(state: dict[str, Any]) -> tuple[str, str, str] | None:
    """(prompt, answer shown as A, answer shown as B) of the next unjudged pair; None when all are judged."""
    i = len(state["verdicts"])
    if i >= len(state["prompts"]):
        return None
    a = state["shown_as_a"][i]
    return state["prompts"][i], state["answers"][a - 1][i], state["answers"][2 - a][i]


def record(state: dict[str, Any], verdict: str) -> dict[str, Any]:
    if verdict not in (A, B, TIE):
        raise ValueError(f"verdict must be A, B or tie, got {verdict!r}")
    shown = current(state)
    if shown is None:
        return state
    i = len(state["verdicts"])
    if state.get("file"):
        a = state["shown_as_a"][i]
        labels = state["labels"]
        append_record(Path(state["file"]), PreferenceRecord(i, shown[0], verdict, labels[a - 1], labels[2 - a],
                                                            shown[1], shown[2]))
    return {**state, "verdicts": [*state["verdicts"], verdict]}


def preferred(state: dict[str, Any], i: int) -> int:
    """The model (1 or 2) the person preferred in pair i, 0 for a tie."""
    return preferred_model(state["verdicts"][i], state["shown_as_a"][i])


def result(state: dict[str, Any]) -> dict[str, Any]:
    """Model 2 against model 1 over the judged pairs: wins, ties, losses, win_rate, ci95 (as the CLI counts)."""
    return summarize([single(preferred(state, i)) for i in range(len(state["verdicts"]))])
