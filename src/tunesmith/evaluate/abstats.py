"""Counting an A/B test: one outcome per pair for model 2 against model 1, a win rate, and its 95% interval.

Two verdicts per pair (the judge saw both orders) become one outcome by MT-Bench's rule: model 2 wins only when it
is preferred in both orders, loses only when model 1 is preferred in both, and everything else is a tie — a pair
where each order prefers a different model is also flagged `inconsistent` (the judge followed the position, not the
answer). A pair with an unparseable verdict in either order is `invalid`: left out of the counts and the interval,
and reported, never turned into a tie or a win.

Win rate = (wins + ties / 2) / judged pairs. The interval is Wilson's score interval for a proportion, applied to that
score with ties counted as half a win. Ties make the score less variable than a plain win/loss proportion, so the
interval is, if anything, a little wider than it needs to be.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95% normal quantile
CI_METHOD = "Wilson score interval on the win rate, ties counted as half a win"


def preferred_model(verdict: str | None, model_shown_as_a: int) -> int | None:
    """The model (1 or 2) a verdict prefers, 0 for a tie, None for an unparseable one."""
    if verdict is None:
        return None
    if verdict == "tie":
        return 0
    return model_shown_as_a if verdict == "A" else 3 - model_shown_as_a


def combine(first: int | None, second: int | None) -> tuple[str, bool]:
    """Outcome for model 2 from the preferences of the two orders, and whether they contradict each other."""
    if first is None or second is None:
        return "invalid", False
    if first == second == 2:
        return "win", False
    if first == second == 1:
        return "loss", False
    return "tie", {first, second} == {1, 2}


def single(preference: int | None) -> str:
    """Outcome for model 2 from one preference (a person judges each pair once)."""
    return {None: "invalid", 0: "tie", 1: "loss", 2: "win"}[preference]


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(outcomes: list[str]) -> dict:
    """Counts of win/tie/loss/invalid (and any other outcome such as 'skipped'), win rate and interval."""
    counts = {name: outcomes.count(name) for name in ("win", "tie", "loss", "invalid", "skipped", "not judged")}
    judged = counts["win"] + counts["tie"] + counts["loss"]
    score = counts["win"] + counts["tie"] / 2
    interval = wilson_interval(score, judged)
    return {"wins": counts["win"], "ties": counts["tie"], "losses": counts["loss"], "judged": judged,
            "invalid": counts["invalid"], "skipped": counts["skipped"], "not_judged": counts["not judged"],
            "win_rate": score / judged if judged else None, "ci95": list(interval) if interval else None,
            "ci_method": CI_METHOD}
