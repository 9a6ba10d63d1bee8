"""Answer normalisation, the exact-answer rule, and BLEU / ROUGE-L on known strings (Korean included)."""

import pytest

from tunesmith.evaluate.metrics import bleu, is_correct, metric_tokens, normalize, numbers, rouge_l


@pytest.mark.parametrize("text, expected", [
    ("  Haneul   RIDE ", "haneul ride"),
    ("Haneul Ride!", "haneul ride"),
    ("\"8 AM - 9 PM.\"", "8 am 9 pm"),
    ("3,000 won", "3000 won"),
    ("1,234,567", "1234567"),
    ("1.5 km", "1.5 km"),
    ("고객센터는 오전 8시부터요!", "고객센터는 오전 8시부터요"),
    ("５０,０００원", "50000원"),  # full-width digits (NFKC)
])
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_numbers_are_extracted_without_separators():
    assert numbers("The deposit is 50,000 won, refunded in 3 days.") == ["50000", "3"]
    assert numbers("2.50 euros") == ["2.5"]


@pytest.mark.parametrize("prediction, answer, ok", [
    ("haneul ride", "Haneul Ride", True),             # case
    ("  Haneul\n Ride  ", "Haneul Ride", True),       # whitespace
    ("Haneul Ride.", "Haneul Ride", True),            # punctuation
    ("3,000 won", "3000", True),                      # thousands separator, number in text
    ("It costs 3000", "3,000 won", False),            # an answer with a unit must appear with it
    ("하늘라이드예요", "하늘라이드", True),              # Korean particle after the answer
    ("The app is called Haneul Ride!", "Haneul Ride", True),  # answer contained in the prediction
    ("보증금은 50,000원입니다.", "50000", True),        # Korean: number glued to a particle
    ("월 59000원이에요", "59000", True),
    ("하늘 라이드", "하늘라이드", False),
    ("30000 won", "3000", False),                     # a different number
    ("Haneul", "Haneul Ride", False),                 # partial answer
    ("", "Haneul Ride", False),
])
def test_is_correct(prediction, answer, ok):
    assert is_correct(prediction, answer) is ok


def test_metric_tokens_split_hangul_into_characters():
    assert metric_tokens("고객센터는 8AM, OK") == ["고", "객", "센", "터", "는", "8am", ",", "ok"]


@pytest.mark.parametrize("text", ["Support is open from 8 AM to 9 PM every day.",
                                  "고객센터는 매일 오전 8시부터 오후 9시까지 운영해요.", "50000"])
def test_identical_strings_score_full_marks(text):
    assert bleu([text], [text]) == pytest.approx(100.0)
    assert rouge_l([text], [text]) == pytest.approx(1.0)


def test_disjoint_strings_score_zero():
    assert bleu(["apple banana cherry"], ["고객센터 운영"]) == pytest.approx(0.0, abs=1e-6)
    assert rouge_l(["apple banana cherry"], ["고객센터 운영"]) == 0.0
    assert bleu(["하늘바이크"], ["보증금입니다"]) == pytest.approx(0.0, abs=1e-6)


def test_korean_near_miss_gets_partial_credit():
    """Word-level matching would give 0 here (particles differ); characters give most of the credit."""
    score = rouge_l(["고객센터는 매일 운영해요"], ["고객센터가 매일 운영합니다"])
    assert 0.5 < score < 1.0
    assert 0 < bleu(["고객센터는 매일 운영해요"], ["고객센터가 매일 운영합니다"]) < 100
