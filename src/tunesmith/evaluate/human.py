"""Human A/B in the terminal: each prompt with its two answers as A and B, in the pair's random order; the person
types 1 (A is better), 2 (B is better), t (tie), s (skip) or q (quit). Which model wrote which answer is shown only
at the end.

Each choice is appended to the preferences file at once (`ab_record`: the same lines the Web UI writes), so quitting,
Ctrl-D or a crash keeps what was done, and the same command later resumes after the last judged prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from tunesmith.errors import DataError
from tunesmith.evaluate.ab_record import PreferenceRecord, append_record, read_records

KEYS = {"1": "A", "a": "A", "2": "B", "b": "B", "t": "tie", "tie": "tie", "s": "skip", "skip": "skip",
        "q": "quit", "quit": "quit"}
RULE = "-" * 72


def _preferred(choice: str, shown: dict[str, str]) -> str | None:
    return shown.get(choice) if choice in ("A", "B") else ("tie" if choice == "tie" else None)


def _outcome(preferred: str | None, labels: list[str]) -> str:
    if preferred is None:
        return "skipped"
    return {"tie": "tie", labels[0]: "loss", labels[1]: "win"}[preferred]


def _record(pair: dict, choice: str, labels: list[str]) -> None:
    shown = pair["shown"]
    preferred = _preferred(choice, shown)
    verdict = choice if choice != "skip" else None
    pair["judgments"] = [{"A": shown["A"], "B": shown["B"], "choice": choice, "verdict": verdict,
                          "preferred": preferred}]
    pair["outcome"] = _outcome(preferred, labels)


def load_preferences(path: Path, pairs: list[dict], labels: list[str]) -> int:
    """Apply the choices already in `path` to `pairs`; return how many there were. A file from another A/B test
    (other prompts or models) is refused rather than mixed in."""
    if not path.exists():
        return 0
    done = 0
    for where, record in read_records(path):
        index, choice, shown = record.index, record.choice, record.shown
        if not 0 <= index < len(pairs) or record.prompt != pairs[index]["prompt"]:
            raise DataError(f"{where}: this prompt is not prompt {index} of this A/B test; the file belongs to "
                            "another test: use another --out (or --ab-file) or delete the file")
        if sorted(shown.values()) != sorted(labels):
            raise DataError(f"{where}: this file compares {shown['A']} and {shown['B']}, not {' and '.join(labels)};"
                            " use another --out (or --ab-file) or delete the file")
        pair = pairs[index]
        pair["shown"] = shown  # the order the person saw then
        pair["answers"] = {shown["A"]: record.answer_a, shown["B"]: record.answer_b}
        _record(pair, choice, labels)
        done += 1
    return done


def _ask(stdin: TextIO, stdout: TextIO) -> str:
    while True:
        stdout.write("Which is better? [1 = A, 2 = B, t = tie, s = skip, q = quit] ")
        stdout.flush()
        line = stdin.readline()
        if not line:  # end of input: like quitting, what was chosen is saved
            stdout.write("\n")
            return "quit"
        answer = KEYS.get(line.strip().lower())
        if answer is not None:
            return answer
        stdout.write("Please type 1, 2, t, s or q.\n")


def run_session(pairs: list[dict], labels: list[str], path: Path, stdin: TextIO, stdout: TextIO) -> None:
    """Ask about every pair not yet in `path`; fill each pair's judgments and outcome; reveal at the end."""
    done = load_preferences(path, pairs, labels)
    todo = [p for p in pairs if "outcome" not in p]
    stdout.write(f"Blind A/B: {len(pairs)} prompts, two answers each, shown as A and B in random order. Your choices "
                 f"are saved to {path} as you go.\n")
    if done:
        stdout.write(f"Resuming: {done} of {len(pairs)} already judged.\n")
    for pair in todo:
        a, b = (pair["answers"][pair["shown"][side]] for side in ("A", "B"))
        stdout.write(f"\n{RULE}\nPrompt {pair['index'] + 1} of {len(pairs)}:\n{pair['prompt']}\n\n"
                     f"[A]\n{a}\n\n[B]\n{b}\n{RULE}\n")
        choice = _ask(stdin, stdout)
        if choice == "quit":
            break
        _record(pair, choice, labels)
        append_record(path, PreferenceRecord(pair["index"], pair["prompt"], choice, pair["shown"]["A"],
                                             pair["shown"]["B"], a, b))
    for pair in pairs:
        if "outcome" not in pair:
            pair.update(judgments=[], outcome="not judged")
    _reveal(pairs, labels, stdout)


def _reveal(pairs: list[dict], labels: list[str], stdout: TextIO) -> None:
    stdout.write(f"\nRevealed: model 1 = {labels[0]}, model 2 = {labels[1]}\n")
    for pair in pairs:
        if not pair["judgments"]:
            continue
        choice = pair["judgments"][0]["choice"]
        shown = pair["shown"]
        said = {"A": f"A = {shown['A']}", "B": f"B = {shown['B']}", "tie": "a tie", "skip": "to skip"}[choice]
        stdout.write(f"  prompt {pair['index'] + 1}: you chose {said} (A was {shown['A']}, B was {shown['B']})\n")
    stdout.flush()
