"""Answer normalisation, the exact-answer rule, and BLEU / ROUGE-L with a tokenisation that works for Korean.

Normalisation (`normalize`): Unicode NFKC, lowercase, thousands separators inside numbers removed ("3,000" ->
"3000"), punctuation and symbols replaced by spaces, whitespace collapsed.

A prediction is correct (`is_correct`) when, after normalisation,
  1. it equals the answer, or
  2. the answer is a number and that number is among the numbers in the prediction ("3000" in "it costs 3,000 won"), or
  3. the answer (not a bare number) is contained in the prediction ("haneul ride" in "the app is called haneul
     ride"; Korean particles may follow: "하늘라이드예요").

Metric tokens (`metric_tokens`): Hangul (and other CJK) text is split into single characters, everything else into
words and single punctuation marks, after lowercasing. Korean attaches particles to words ("고객센터는"), so word-level
matching would score near-misses as zero; characters do not. BLEU is sacrebleu's corpus BLEU on these tokens
(tokenize="none", effective order, so short answers still score); ROUGE-L is rouge-score's F-measure with the same
tokenizer, averaged over rows.
"""

from __future__ import annotations

import re
import unicodedata

_THOUSANDS = re.compile(r"(?<=\d)[,\u066c](?=\d{3}(?!\d))")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
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


def numbers(text: str) -> list[str]:
    """Numbers in a normalised text, written without thousands separators or trailing zeros after a point."""
    found = []
    for n in _NUMBER.findall(normalize(text)):
        if "." in n:
            n = n.rstrip("0").rstrip(".")
        found.append(n)
    return found


def is_correct(prediction: str, answer: str) -> bool:
    pred, ans = normalize(prediction), normalize(answer)
    if not ans:
        return not pred
    if pred == ans:
        return True
    if _NUMBER.fullmatch(ans):  # a number is matched as a whole number only: "3000" is not in "30000"
        return numbers(ans)[0] in numbers(pred)
    return ans in pred


def metric_tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", str(text)).lower())


class _Tokenizer:
    """The object rouge-score expects: `.tokenize(text) -> tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return metric_tokens(text)


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100)."""
    from sacrebleu.metrics import BLEU

    if not predictions:
        return 0.0
    hyps = [" ".join(metric_tokens(p)) for p in predictions]
    refs = [" ".join(metric_tokens(r)) for r in references]
    return float(BLEU(tokenize="none", effective_order=True).corpus_score(hyps, [refs]).score)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure (0-1)."""
    from rouge_score import rouge_scorer

    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)) / len(predictions)
