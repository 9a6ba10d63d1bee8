"""Answer normalisation, exact-answer scoring that reads the model's *final* answer, and BLEU / ROUGE-L with a
tokenisation that works for Korean.

Normalisation (`normalize`): Unicode NFKC, lowercase, thousands separators inside numbers removed ("3,000" ->
"3000"), punctuation and symbols replaced by spaces, whitespace collapsed.

Why "final": a model that reasons out loud mentions many numbers ("Bogan had 10 maggots ... 10 - 1 = 9"); counting a
number found *anywhere* would score that as right for 10. So `is_correct` reads one answer from the prediction:

- The answer part (`answer_part`): a marker (`####`, "answer is", "answer:", "정답은", "정답:", "답은", "답:")
  introduces the answer, so if the prediction has one, its answer is what follows the LAST marker (earlier ones are
  drafts); without a marker, the whole prediction.
- Numeric answer (the answer is one number: "50000", "-3", "2.5", "50,000"): the prediction's final number is the
  first number after the last marker, or, without a marker, the last number in the prediction. Numbers the
  prediction itself rejects are skipped ("12, not 42" answers 12; "42가 아니라 12" too). Compared numerically:
  50000 == 50,000 == 50000.0, "3000" is not "30000"; a minus sign directly before the digits is kept ("-5"), a dash
  between numbers is not a sign ("10 - 1", "1588-4127").
- Text answer, rule `exact` (the default): the normalised answer part equals the normalised answer (after a marker,
  the answer part ends with its sentence: "The answer is Haneul Ride. It is free." gives "haneul ride").
- Text answer, rule `contains` (set per row by the benchmark file, `"match": "contains"`): the answer's words occur
  in the answer part as whole words, in order and adjacent ("haneul ride" in "the app is called haneul ride"; "no"
  is not in "not"). Korean attaches particles and the copula to the word before them, so the answer's LAST word may
  be followed, inside the same word, by a sequence of known particles / endings (`KOREAN_PARTICLES`):
  "하늘라이드예요", "서울숲에서요" and "Parang이에요" count, "하늘" is not in "하늘라이드" ("라이드" is no particle).
  A fixed list, not "any Hangul", so a Korean answer cannot match the start of a longer Korean word.

Metric tokens (`metric_tokens`): Hangul (and other CJK) text is split into single characters, everything else into
words and single punctuation marks, after lowercasing. Korean attaches particles to words ("고객센터는"), so word-level
matching would score near-misses as zero; characters do not. BLEU is sacrebleu's corpus BLEU on these tokens
(tokenize="none", effective order, so short answers still score); ROUGE-L is rouge-score's F-measure with the same
tokenizer, averaged over rows.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from tunesmith.extras import require

MATCH_RULES = ("exact", "contains")  # how a text answer is compared; numbers are always compared as numbers

_THOUSANDS = re.compile(r"(?<=\d)[,\u066c](?=\d{3}(?!\d))")
# A minus is a sign only where it cannot be a dash between two things ("10 - 1", "1588-4127", "H-2").
_NUMBER = re.compile(r"(?:(?<![\w-])-)?[0-9]+(?:\.[0-9]+)?")
_MARKER = re.compile(r"(?:####|\banswer(?:\s+is\b|\s*:)|정답\s*(?:은|는|:)|(?<![가-힣])답\s*(?:은|는|:))[\s:=*]*")
_REJECTED_BEFORE = re.compile(r"(?:\bnot|n['’]t)[^\w\n]*$")  # "not 42", "isn't 42"
_REJECTED_AFTER = re.compile(r"^\s*\S{0,3}?\s*아니(?![요오])")  # "42가 아니라", "42원이 아니고" (not "아니요" = "no")
_SENTENCE_END = re.compile(r"[.!?。]+(?![0-9])|\n")
KOREAN_PARTICLES = (
    "이에요", "예요", "입니다", "이었", "였", "어요", "습니다", "이다", "다", "이야", "야", "이죠", "죠", "이지요", "지요",
    "이고", "고", "인데", "이며", "며", "이라고", "라고", "이라는", "라는", "이랑", "랑", "이나", "나", "에서", "에게",
    "께서", "한테", "까지", "부터", "보다", "처럼", "하고", "으로", "로", "와", "과", "의", "에", "도", "만", "은", "는",
    "이", "가", "을", "를", "요")
_PARTICLES = re.compile("(?:" + "|".join(sorted(KOREAN_PARTICLES, key=len, reverse=True)) + ")+")
_CJK = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\u3040-\u30ff\u4e00-\u9fff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).lower()
    while _THOUSANDS.search(text):
        text = _THOUSANDS.sub("", text)
    kept = []
    for i, ch in enumerate(text):
        if ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            kept.append(ch)  # a decimal point stays: "1.5" is not "1 5"
        elif unicodedata.category(ch)[0] in "PS":
            kept.append(" ")
        else:
            kept.append(ch)
    return " ".join("".join(kept).split())


def _prepare(text: str) -> str:
    """NFKC, lowercase, thousands separators removed; punctuation kept (markers and minus signs are punctuation)."""
    text = unicodedata.normalize("NFKC", str(text)).lower().replace("\u2212", "-")
    while _THOUSANDS.search(text):
        text = _THOUSANDS.sub("", text)
    return text


def _canonical(number: str) -> str:
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number in ("-0", "") else number


def numbers(text: str) -> list[str]:
    """Every number in a text, written without thousands separators or trailing zeros after a point."""
    return [_canonical(m.group()) for m in _NUMBER.finditer(_prepare(text))]


def as_number(answer: str) -> Decimal | None:
    """The answer's value if the answer is exactly one number ("50,000", "-3", "2.50"), else None."""
    text = _prepare(answer).strip()
    return Decimal(text) if _NUMBER.fullmatch(text) else None


def _last_marker_end(text: str) -> int | None:
    markers = list(_MARKER.finditer(text))
    return markers[-1].end() if markers else None


def final_number(prediction: str) -> Decimal | None:
    """The number the prediction gives as its answer: the first one after the last marker, else the last one;
    numbers it rejects ("not 42") are skipped. None if there is none."""
    text = _prepare(prediction)
    start = _last_marker_end(text)
    candidates = [m for m in _NUMBER.finditer(text)
                  if (start is None or m.start() >= start) and not _REJECTED_BEFORE.search(text[:m.start()])
                  and not _REJECTED_AFTER.match(text[m.end():])]
    if not candidates:
        return None
    return Decimal((candidates[0] if start is not None else candidates[-1]).group())


def answer_part(prediction: str, whole_sentence_only: bool = False) -> str:
    """What follows the last marker (to the end of its sentence if `whole_sentence_only`), or the whole prediction."""
    text = _prepare(prediction)
    start = _last_marker_end(text)
    if start is None:
        return text
    part = text[start:].lstrip()
    return _SENTENCE_END.split(part, maxsplit=1)[0] if whole_sentence_only else part


def _word_with_particles(word: str, expected: str) -> bool:
    return word == expected or (word.startswith(expected) and _PARTICLES.fullmatch(word[len(expected):]) is not None)


def contains_words(text: str, answer: str) -> bool:
    """The normalised answer's words occur in the normalised text as adjacent whole words; the last may carry
    Korean particles."""
    have, want = normalize(text).split(), normalize(answer).split()
    n = len(want)
    return any(have[i:i + n - 1] == want[:-1] and _word_with_particles(have[i + n - 1], want[-1])
               for i in range(len(have) - n + 1))


def is_correct(prediction: str, answer: str, match: str = "exact") -> bool:
    """Whether the prediction's final answer is the answer (rules in the module docstring)."""
    if match not in MATCH_RULES:
        raise ValueError(f"match should be one of {', '.join(MATCH_RULES)}, got {match!r}")
    target = as_number(answer)
    if target is not None:
        return final_number(prediction) == target
    expected = normalize(answer)
    if not expected:
        return not normalize(prediction)
    if match == "contains":
        return contains_words(answer_part(prediction), answer)
    return normalize(answer_part(prediction, whole_sentence_only=True)) == expected


def metric_tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", str(text)).lower())


class _Tokenizer:
    """The object rouge-score expects: `.tokenize(text) -> tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return metric_tokens(text)


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100)."""
    BLEU = require("sacrebleu.metrics", "BLEU").BLEU

    if not predictions:
        return 0.0
    hyps = [" ".join(metric_tokens(p)) for p in predictions]
    refs = [" ".join(metric_tokens(r)) for r in references]
    return float(BLEU(tokenize="none", effective_order=True).corpus_score(hyps, [refs]).score)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure (0-1)."""
    rouge_scorer = require("rouge_score.rouge_scorer", "ROUGE-L")

    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)) / len(predictions)
