"""Answer normalisation, the exact-answer rules (the final answer, numbers compared as numbers, text by a whole
match or whole words), and BLEU / ROUGE-L on known strings (Korean included)."""

import pytest

from tunesmith.evaluate.metrics import (
    answer_part,
    bleu,
    final_number,
    is_correct,
    metric_tokens,
    normalize,
    numbers,
    rouge_l,
)


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
    assert numbers("-5 degrees, 10 - 1 = 9, call 1588-4127") == ["-5", "10", "1", "9", "1588", "4127"]


@pytest.mark.parametrize("prediction, answer, ok", [
    ("haneul ride", "Haneul Ride", True),             # case
    ("  Haneul\n Ride  ", "Haneul Ride", True),       # whitespace
    ("Haneul Ride.", "Haneul Ride", True),            # punctuation
    ("3,000 won", "3000", True),                      # thousands separator, number in text
    ("It costs 3000", "3,000 won", False),            # an answer with a unit must appear with it
    ("하늘라이드예요", "하늘라이드", False),             # exact: a particle makes it another string (see contains)
    ("The app is called Haneul Ride!", "Haneul Ride", False),  # exact: a sentence is not the name (see contains)
    ("보증금은 50,000원입니다.", "50000", True),        # Korean: number glued to a particle
    ("월 59000원이에요", "59000", True),
    ("하늘 라이드", "하늘라이드", False),
    ("30000 won", "3000", False),                     # a different number
    ("Haneul", "Haneul Ride", False),                 # partial answer
    ("", "Haneul Ride", False),
])
def test_is_correct(prediction, answer, ok):
    assert is_correct(prediction, answer) is ok


@pytest.mark.parametrize("prediction, answer, ok", [
    ("12, not 42", "42", False),                      # the prediction rejects 42: its answer is 12
    ("12, not 42", "12", True),
    ("42가 아니라 12입니다", "42", False),               # the same in Korean
    ("#### 42", "42", True),
    ("3 + 4 = 7, so 7 * 6 = 42.\n#### 42", "42", True),
    ("The answer is 42.", "42", True),
    ("The answer is 42. Check: 42 - 2 = 40", "42", True),   # after a marker, the number right after it
    ("First guess: the answer is 7. No wait, the answer is 9.", "9", True),  # the LAST marker wins
    ("First guess: the answer is 7. No wait, the answer is 9.", "7", False),
    ("Answer: 15", "15", True),
    ("정답은 50,000원입니다", "50000", True),
    ("답: 7개", "7", True),
    ("Bogan had 10 maggots... 10 - 1 = 9", "10", False),  # a number mentioned on the way is not the answer
    ("Bogan had 10 maggots... 10 - 1 = 9", "9", True),
    ("10 - 1 = 9", "9", True),
    ("50,000원입니다", "50000", True),
    ("50000.0 won", "50,000", True),                  # numerically equal
    ("30000", "3000", False),
    ("3000", "30000", False),
    ("It is -5 degrees", "-5", True),                 # a sign directly before the digits is kept
    ("It is 5 degrees", "-5", False),
    ("about 2.50 km", "2.5", True),
    ("about 2.05 km", "2.5", False),
    ("The answer is", "42", False),                   # a marker with no number after it: no answer
    ("I don't know", "42", False),
])
def test_numeric_answers_use_the_final_number(prediction, answer, ok):
    assert is_correct(prediction, answer) is ok


def test_final_number_and_answer_part():
    assert final_number("Bogan had 10 maggots... 10 - 1 = 9") == 9
    assert final_number("#### 1,234 and then 5") == 1234
    assert final_number("no digits") is None
    assert answer_part("The answer is Haneul Ride. It is free.", whole_sentence_only=True) == "haneul ride"
    assert answer_part("The answer is Haneul Ride. It is free.") == "haneul ride. it is free."
    assert answer_part("Haneul Ride") == "haneul ride"


@pytest.mark.parametrize("prediction, answer, exact, contains", [
    ("not", "no", False, False),                      # "no" is not a whole word of "not"
    ("no", "no", True, True),
    ("the app is called Haneul Ride", "Haneul Ride", False, True),
    ("The answer is Haneul Ride.", "Haneul Ride", True, True),  # after a marker: the sentence that follows
    ("Haneul Rider", "Haneul Ride", False, False),    # a longer English word is another word
    ("Ride Haneul", "Haneul Ride", False, False),     # the words in order
    ("하늘라이드예요", "하늘라이드", False, True),         # Korean particles / copula after the answer
    ("앱 이름은 하늘라이드입니다.", "하늘라이드", False, True),
    ("첫 대여소는 서울숲에서요", "서울숲", False, True),
    ("마스코트는 Parang이에요", "Parang", False, True),   # a Latin name with a Korean particle
    ("하늘라이드", "하늘", False, False),                # "라이드" is no particle: another word
    ("하늘라이드앱이에요", "하늘라이드", False, False),
    ("Is it Haneul Ride? The answer is Sky Ride.", "Haneul Ride", False, False),  # only after the last marker
])
def test_text_answers_exact_and_contains(prediction, answer, exact, contains):
    assert is_correct(prediction, answer, "exact") is exact
    assert is_correct(prediction, answer, "contains") is contains


def test_numbers_ignore_the_text_rule():
    assert is_correct("It costs 3,000 won in total", "3000", "contains")
    assert not is_correct("It costs 3,000 won, 30000 with insurance", "3000", "contains")


def test_unknown_match_rule_is_refused():
    with pytest.raises(ValueError, match="exact, contains"):
        is_correct("a", "a", "fuzzy")


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
