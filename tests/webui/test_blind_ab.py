"""Human blind A/B in the page: shuffled pairs, the person's picks, and the reveal counted as the CLI counts."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tunesmith.errors import DataError
from tunesmith.webui import blind_ab
from tunesmith.webui.ab_tab import reveal_markdown

PROMPTS = [{"text": f"q{i}", "system": None} for i in range(6)]


def session(seed: int = 3) -> dict:
    return blind_ab.new_session(("base", "runs/tuned"), PROMPTS, [f"base answer {i}" for i in range(6)],
                                [f"tuned answer {i}" for i in range(6)], seed=seed)


def test_pairs_are_shown_in_a_seeded_random_order():
    state = session()
    assert set(state["shown_as_a"]) == {1, 2}  # both orders occur with this seed
    assert state["shown_as_a"] == session()["shown_as_a"]
    prompt, answer_a, answer_b = blind_ab.current(state)
    first = state["shown_as_a"][0]
    assert prompt == "q0" and answer_a.startswith("base" if first == 1 else "tuned")
    assert answer_b.startswith("tuned" if first == 1 else "base")


def test_picking_the_tuned_answer_every_time_makes_model_2_win_every_pair():
    state = session()
    for i in range(6):
        tuned_is_a = state["shown_as_a"][i] == 2
        state = blind_ab.record(state, blind_ab.A if tuned_is_a else blind_ab.B)
    assert blind_ab.current(state) is None
    assert blind_ab.record(state, blind_ab.A) == state  # nothing left to judge
    result = blind_ab.result(state)
    assert (result["wins"], result["ties"], result["losses"], result["win_rate"]) == (6, 0, 0, 1.0)
    shown = reveal_markdown(state, "en")
    assert "**runs/tuned** against **base**: 6 wins, 0 ties, 0 losses" in shown
    assert shown.count("preferred: runs/tuned") == 6


def test_ties_count_half_and_bad_verdicts_are_refused():
    state = session()
    state = blind_ab.record(blind_ab.record(state, blind_ab.TIE), blind_ab.TIE)
    assert blind_ab.result(state)["win_rate"] == 0.5
    assert "무승부" in reveal_markdown(state, "ko")
    with pytest.raises(ValueError):
        blind_ab.record(state, "left")


def test_prompts_typed_and_from_a_benchmark_file(tmp_path):
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"question": "Deposit?", "answer": "50000"},
                                                   {"question": "Mascot?", "answer": "crane"}])
    prompts = blind_ab.prompts_from("Typed one\n\n  Typed two \n", str(bench), limit=3)
    assert [p["text"] for p in prompts] == ["Typed one", "Typed two", "Deposit?"]
    with pytest.raises(DataError):
        blind_ab.prompts_from("  \n", None, 5)


@pytest.mark.slow
def test_answers_come_from_the_model_greedily(embedded_dir):
    prompts = [{"text": "What is the capital of France?", "system": None},
               {"text": "Say hello.", "system": "Answer in one word."}]
    answers = blind_ab.answer_all("base", prompts, max_new_tokens=10)
    assert len(answers) == 2 and "Paris" in answers[0]
