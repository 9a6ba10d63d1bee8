"""Reading a judge's reply: "A", "B", "tie", or None when it names no single verdict.

Judges answer in many shapes ("[[A]]", "Answer: B", "Assistant A is better.", "Tie.", "B가 더 좋습니다", "무승부"),
often after some reasoning. The rules, first match wins:
  1. the last bracketed verdict `[[A]]`, `[[B]]`, `[[C]]` or `[[tie]]` (the MT-Bench format; [[C]] = tie), since a
     judge that reasons first states its verdict at the end;
  2. the last labelled verdict: "verdict/answer/winner/decision/choice/판정/결과/정답/답: X";
  3. the first line alone is a verdict word ("A", "**B**", "Tie.", "Answer A", "동점");
  4. claims anywhere: "A is better", "B wins", "I prefer A", "the better answer is B", "the more helpful one is
     Answer A", "A가 더 낫다", "B 답변이 더 좋습니다"; a tie phrase ("it's a tie", "equally good", "무승부") only
     counts when no answer letter is claimed.
Anything else, or claims for both A and B, is None: the caller counts it as an invalid verdict, never as a tie.
Letters are matched in upper case only (except a first line that is just "a" or "b"), so the article in "it's a
tie" is not read as answer A.
"""

from __future__ import annotations

import re
import unicodedata

_TIE_WORDS = r"(?i:tie|tied|draw|equal|equally good|same|c|동점|무승부|비김|비겼|비슷|같음|둘 다 같)"
_BRACKETED = re.compile(r"\[\[\s*((?i:A|B|C|tie))\s*\]\]")
_LABELLED = re.compile(r"(?i:verdict|answer|winner|decision|choice|judgement|judgment|판정|결과|정답|답변|응답|답|승자)"
                       r"\s*[:：]\s*(?:(?i:answer|response|assistant|응답|답변)\s*)?"
                       rf"(A|B|{_TIE_WORDS})(?![A-Za-z])")
_LINE = re.compile(rf"(?:(?i:answer|response|assistant|model|응답|답변)\s*)?((?i:A|B)|{_TIE_WORDS})"
                   r"(?:\s*(?:답변|응답))?(?:\s*(?:입니다|이에요|예요|임|is better|wins))?")
_NAME = r"(?:(?i:answer|response|assistant|model)\s+)?"
_CLAIMS = [
    re.compile(rf"(?<![A-Za-z]){_NAME}(A|B)(?![A-Za-z])(?:'s)?\s+(?:answer\s+|response\s+)?"
               r"(?i:is\s+(?:clearly\s+|much\s+|slightly\s+)?(?:better|superior|the\s+winner|preferred|more\s+helpful)"
               r"|wins|performs\s+better)"),
    re.compile(rf"(?i:prefer|preferred|choose|pick|select)\s+{_NAME}(A|B)(?![A-Za-z])"),
    re.compile(r"(?i:better|best|winning|preferred|superior)\s+(?i:answer|response|one)?\s*(?i:is)\s+"
               rf"{_NAME}(A|B)(?![A-Za-z])"),
    re.compile(r"(?i:\bis)\s+(?i:answer|response|assistant)\s+(A|B)(?![A-Za-z])"),  # "... most helpful is Answer B"
    re.compile(r"(?<![A-Za-z])(A|B)\s*(?:답변|응답)?\s*(?:이|가|쪽이|이가)?\s*(?:더\s*)?(?:낫|좋|우수|훌륭|적절|정확|승리)"),
]
_TIE_PHRASE = re.compile(r"(?i:\bit'?s\s+a\s+tie\b|\btie\b|\btied\b|\bdraw\b|equally\s+(?:good|bad|helpful)|"
                         r"neither\s+is\s+better|no\s+clear\s+winner|동점|무승부|비김|비겼|둘\s*다\s*(?:비슷|같|동일))")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[*_`\"'“”‘’#>]+", "", text).strip()


def _label(token: str) -> str:
    return token.upper() if token.upper() in ("A", "B") else "tie"


def parse_verdict(reply: str | None) -> str | None:
    if not reply or not reply.strip():
        return None
    bracketed = _BRACKETED.findall(unicodedata.normalize("NFKC", reply))
    if bracketed:
        return _label(bracketed[-1])
    text = _normalise(reply)
    labelled = _LABELLED.findall(text)
    if labelled:
        return _label(labelled[-1])
    first_line = text.splitlines()[0].strip().rstrip(".!。:").strip() if text else ""
    line = _LINE.fullmatch(first_line)
    if line:
        return _label(line.group(1))
    claimed = {m for pattern in _CLAIMS for m in pattern.findall(text)}
    if len(claimed) == 1:
        return claimed.pop()
    if not claimed and _TIE_PHRASE.search(text):
        return "tie"
    return None
