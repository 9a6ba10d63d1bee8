"""Reading judge replies, combining the two orders of a pair, and the Wilson interval on known numbers."""

import pytest

from tunesmith.evaluate.abstats import combine, preferred_model, summarize, wilson_interval
from tunesmith.evaluate.verdict import parse_verdict

VERDICTS = {
    "A": "A", "B": "B", "tie": "tie", "Tie.": "tie", "a": "A", "b.": "B", "C": "tie",
    "[[A]]": "A", "[[B]]": "B", "[[C]]": "tie", "[[tie]]": "tie", "[[ TIE ]]": "tie", "[[a]]": "A",
    "Answer: B": "B", "Answer:A": "A", "**Verdict:** [[A]]": "A", "Verdict: **B**": "B", "Winner: tie": "tie",
    "Assistant A is better.": "A", "I prefer B.": "B", "Response B wins": "B", "The better answer is A.": "A",
    "**A**": "A", "Answer A": "A", "A\nBecause it names the hours.": "A", "Ａ": "A",
    "A is more detailed but wrong.\nFinal verdict: [[B]]": "B",
    "The format is [[A]], [[B]] or [[tie]]. My verdict: [[B]]": "B",
    "I think Assistant B is more accurate, so B is better.": "B",
    "The answer that is more helpful and correct is Answer A.": "A",  # the embedded SmolLM2 as judge said this
    "It's a tie.": "tie", "Both are equally good.": "tie",
    "B가 더 좋습니다.": "B", "A가 더 낫습니다": "A", "B 답변이 더 정확합니다.": "B", "판정: B": "B", "답: A": "A",
    "답변: A": "A", "무승부": "tie", "동점입니다": "tie", "둘 다 비슷합니다": "tie",
}
UNPARSEABLE = ["", "   ", None, "I cannot decide.", "A or B", "Both A and B are good.", "Hmm",
               "This is Answer A and this is Answer B.",
               "[Question]\nWhere is it?\n\n[Answer A]\nSeoul\n[End of answer A]",  # an echo of the prompt
               "A is better. No wait, B is better.", "Certainly! Here is my analysis", "The answer is correct.",
               "Answer: Certainly"]


@pytest.mark.parametrize("reply, expected", VERDICTS.items())
def test_verdicts_are_read(reply, expected):
    assert parse_verdict(reply) == expected


@pytest.mark.parametrize("reply", UNPARSEABLE)
def test_unparseable_replies_are_none_not_a_tie(reply):
    assert parse_verdict(reply) is None


def test_preferences_follow_the_order_shown():
    assert preferred_model("A", 1) == 1 and preferred_model("A", 2) == 2
    assert preferred_model("B", 1) == 2 and preferred_model("B", 2) == 1
    assert preferred_model("tie", 2) == 0 and preferred_model(None, 1) is None


@pytest.mark.parametrize("first, second, outcome, inconsistent", [
    (2, 2, "win", False), (1, 1, "loss", False), (0, 0, "tie", False),
    (2, 0, "tie", False), (0, 1, "tie", False),  # preferred in one order only: not a win
    (1, 2, "tie", True), (2, 1, "tie", True),  # each order preferred its A (or B): position bias
    (None, 2, "invalid", False), (1, None, "invalid", False),
])
def test_two_orders_combine(first, second, outcome, inconsistent):
    assert combine(first, second) == (outcome, inconsistent)


def test_wilson_interval_on_known_numbers():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_summary_counts_ties_as_half_and_leaves_invalid_out():
    s = summarize(["win"] * 3 + ["tie"] * 2 + ["loss"] + ["invalid"] * 2 + ["skipped"])
    assert (s["wins"], s["ties"], s["losses"], s["judged"], s["invalid"], s["skipped"]) == (3, 2, 1, 6, 2, 1)
    assert s["win_rate"] == pytest.approx(4 / 6)
    assert s["ci95"] == pytest.approx(list(wilson_interval(4, 6)))
    empty = summarize(["invalid", "invalid"])
    assert empty["judged"] == 0 and empty["win_rate"] is None and empty["ci95"] is None
