"""Benchmark files and how a model is scored on them.

A row's kind is told by its keys:
- multiple choice: {"question", "choices": [...], "answer": "A".. or a 0-based index} (an optional "subject" is ignored);
- exact answer:    {"question", "answer"} (answer text or a number), optionally "match": "exact" (the default) or
  "contains": how a text answer is compared (see `metrics.is_correct`; numbers are always compared as numbers).
Public benchmarks' own layouts are read too (`_published`): ARC/OpenBookQA/CommonsenseQA, letter columns (MMLU's
CSV, KMMLU), HellaSwag, and GSM8K's answers (the part after "####" is the reference).
Every row of a file must be of one kind. Files are read like training data (jsonl, json, csv, parquet), so a bad row
stops with `path:line: what; fix`.

Multiple choice: the prompt is the chat-templated user turn "question / A. ... / B. ... / Answer:"; each option's
text is scored by its log-likelihood as the assistant's answer, two ways (`pick_options`), like lm-eval-harness's acc
and acc_norm: `accuracy` picks the highest summed log-likelihood, `accuracy_norm` the highest log-likelihood per
character of the option. The sum favours short options (every extra token can only lower it); dividing by the
length removes that bias. Characters rather than tokens, as lm-eval does: the character count is the same for every
tokenizer, so models with different vocabularies are normalised alike. With few-shot K, the first K rows of the file
become earlier user/assistant turns (answered with the correct option's text) and are not scored.

Exact answer: the question as one user turn, greedy decoding (temperature 0, at most 64 new tokens), batched
through the model's Engine; correctness by `metrics.is_correct` with the row's match rule: the prediction's final
answer (after the last "####" / "answer is" / "정답은"-style marker, else the last number or the whole reply).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError
from tunesmith.evaluate.metrics import MATCH_RULES, bleu, is_correct, rouge_l
from tunesmith.infer.engine import Request, SamplingParams

LETTERS = string.ascii_uppercase
MAX_NEW_TOKENS = 64
GENERATION_BATCH = 16


@dataclass
class Item:
    question: str
    answer: str  # exact: the reference text; MC: the correct letter
    choices: list[str] = field(default_factory=list)
    location: str = ""
    match: str = "exact"  # exact answers: how a text answer is compared (metrics.MATCH_RULES)

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)


@dataclass
class Benchmark:
    name: str
    path: str
    kind: str  # "mc" or "exact"
    items: list[Item]
    shots: list[Item] = field(default_factory=list)  # few-shot examples (MC only), not scored


def _text(value, location: str, key: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{location}: '{key}' should be non-empty text, got {json.dumps(value, ensure_ascii=False)}; "
                        f"write the {key} or delete the row")
    return value.strip()


def _published(location: str, row: dict) -> dict:
    """Public benchmarks as they are published -> {question, choices, answer}: ARC, OpenBookQA and CommonsenseQA
    (choices {text, label}, answerKey), one column per option A, B, C, D (MMLU's CSV; KMMLU, whose answer is 1-based),
    HellaSwag (ctx, endings, label). Any other row is returned as it is."""
    choices = row.get("choices")
    if isinstance(choices, dict) and "text" in choices and "answerKey" in row:  # ARC, OpenBookQA, CommonsenseQA
        labels, key = [str(label) for label in choices.get("label") or []], str(row["answerKey"]).strip()
        answer = labels.index(key) if key in labels else key
        return {"question": row.get("question", row.get("question_stem")), "choices": choices["text"],
                "answer": answer}
    if "question" in row and "answer" in row and "choices" not in row and {"A", "B"} <= set(row):
        options = [row[letter] for letter in LETTERS if letter in row]
        answer = row["answer"]
        if isinstance(answer, str) and answer.strip().isdigit():
            answer = int(answer.strip())
        if isinstance(answer, int) and not isinstance(answer, bool):
            if not 1 <= answer <= len(options):
                raise DataError(f"{location}: 'answer' {answer}: with one column per option, a number counts from 1 "
                                f"(as in KMMLU); write 1-{len(options)} or a letter")
            answer -= 1  # KMMLU numbers its answers from 1; the letter columns' MMLU CSVs write a letter
        return {"question": row["question"], "choices": options, "answer": answer}
    if "ctx" in row and "endings" in row and "label" in row:  # HellaSwag
        return {"question": row["ctx"], "choices": row["endings"], "answer": row["label"]}
    if "choices" not in row and isinstance(row.get("answer"), str) and "####" in row["answer"]:
        return {**row, "answer": row["answer"].rsplit("####", 1)[1]}  # GSM8K: the worked solution, then #### 72
    return row


def _parse_row(location: str, row: dict) -> tuple[str, Item]:
    row = _published(location, row)
    if "question" not in row or "answer" not in row:
        keys = sorted(row)
        headerless = len(keys) >= 3 and any(len(k.strip()) == 1 and k.strip().upper() in LETTERS[:8] for k in keys)
        hint = (" (the first line of a CSV is its header: this one looks like a question; add a header line such "
                "as question,A,B,C,D,answer)") if headerless and location.endswith(":2") else ""
        raise DataError(f"{location}: a benchmark row needs 'question' and 'answer' (plus 'choices' for multiple "
                        f"choice), got {keys}{hint}; add the missing keys")
    question = _text(row["question"], location, "question")
    if "choices" not in row or row["choices"] is None:
        match = row.get("match") or "exact"  # empty (a csv cell left blank) means the default
        if match not in MATCH_RULES:
            raise DataError(f"{location}: 'match' {json.dumps(match, ensure_ascii=False)} is not a match rule; write "
                            f"one of {', '.join(MATCH_RULES)} (or leave it out for exact)")
        return "exact", Item(question, _text(row["answer"], location, "answer"), location=location, match=match)
    choices = row["choices"]
    if isinstance(choices, str):  # a csv cell holding a JSON list
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            pass
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise DataError(f"{location}: 'choices' should be a list of 2 to {len(LETTERS)} options; "
                        'write e.g. "choices": ["yes", "no"]')
    choices = [_text(c, location, "choices") for c in choices]
    answer = row["answer"]
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer.strip())
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        letter = LETTERS[answer]
    elif isinstance(answer, str) and answer.strip().upper() in LETTERS[: len(choices)] and answer.strip():
        letter = answer.strip().upper()
    else:
        raise DataError(f"{location}: 'answer' {json.dumps(answer, ensure_ascii=False)} names no choice; write a "
                        f"letter A-{LETTERS[len(choices) - 1]} or a 0-based index below {len(choices)}")
    return "mc", Item(question, letter, choices, location)


def load_benchmark(path: str, few_shot: int = 0, max_samples: int | None = None) -> Benchmark:
    kind, items = None, []
    for location, row in read_rows(path, "test"):
        row_kind, item = _parse_row(location, row)
        if kind is None:
            kind = row_kind
        elif row_kind != kind:
            names = {"mc": "multiple-choice", "exact": "exact-answer"}
            raise DataError(f"{location}: an {names[row_kind]} row in a {names[kind]} benchmark; put the two kinds "
                            "in separate files")
        items.append(item)
    shots = []
    if kind == "mc" and few_shot:
        if few_shot >= len(items):
            raise DataError(f"{path}: --few-shot {few_shot} leaves no question out of {len(items)} to score; "
                            "lower --few-shot")
        shots, items = items[:few_shot], items[few_shot:]
    if max_samples:
        items = items[:max_samples]
    return Benchmark(Path(path).stem, str(path), kind, items, shots)


def mc_prompt(item: Item) -> str:
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return f"{item.question}\n{options}\nAnswer:"


def mc_messages(item: Item, shots: list[Item]) -> list[dict[str, str]]:
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": mc_prompt(shot)},
                     {"role": "assistant", "content": shot.choices[shot.answer_index]}]
    return messages + [{"role": "user", "content": mc_prompt(item)}]


@torch.no_grad()
def option_logprobs(model, prompt_ids: list[int], options: list[list[int]]) -> list[float]:
    """Summed log-probability of each option's tokens following the prompt (one right-padded batch)."""
    device = next(model.parameters()).device
    rows = [prompt_ids + opt for opt in options]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.float().cpu()
    logprobs = torch.log_softmax(logits, dim=-1)
    scores = []
    for i, opt in enumerate(options):
        start = len(prompt_ids)
        positions = torch.arange(start - 1, start - 1 + len(opt))
        scores.append(float(logprobs[i, positions, torch.tensor(opt)].sum()))
    return scores


def pick_options(logprobs: list[float], choices: list[str]) -> tuple[int, int]:
    """The option picked by the summed log-likelihood, and the one picked by log-likelihood per character of the
    option's text (ties: the first option)."""
    per_char = [lp / max(len(c), 1) for lp, c in zip(logprobs, choices)]
    return (max(range(len(logprobs)), key=logprobs.__getitem__), max(range(len(per_char)), key=per_char.__getitem__))


def score_mc(loaded, bench: Benchmark) -> tuple[dict, list[dict]]:
    """`accuracy` (summed log-likelihood) and `accuracy_norm` (per character); samples carry both picks."""
    tok = loaded.tokenizer
    correct = correct_norm = 0
    samples = []
    for item in bench.items:
        prompt = loaded.encode_chat(mc_messages(item, bench.shots))
        options = [tok(c, add_special_tokens=False)["input_ids"] for c in item.choices]
        summed, normalised = pick_options(option_logprobs(loaded.model, prompt, options), item.choices)
        correct += summed == item.answer_index
        correct_norm += normalised == item.answer_index
        samples.append({"prediction": LETTERS[summed], "correct": summed == item.answer_index,
                        "prediction_norm": LETTERS[normalised], "correct_norm": normalised == item.answer_index})
    return {"accuracy": correct / len(bench.items), "accuracy_norm": correct_norm / len(bench.items)}, samples


def generate_replies(loaded, conversations: list[list[dict[str, str]]],
                     max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy replies to each conversation (rendered with the model's chat template), decoded in batches."""
    loaded.activate()
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    replies = []
    for start in range(0, len(conversations), GENERATION_BATCH):
        requests = [Request(loaded.encode_chat(messages), params)
                    for messages in conversations[start:start + GENERATION_BATCH]]
        loaded.engine.generate(requests)
        replies += [r.text.rstrip("\ufffd").strip() for r in requests]  # a character cut by the token limit
    return replies


def generate_answers(loaded, questions: list[str]) -> list[str]:
    return generate_replies(loaded, [[{"role": "user", "content": q}] for q in questions])


def score_exact(loaded, bench: Benchmark) -> tuple[dict, list[dict]]:
    predictions = generate_answers(loaded, [item.question for item in bench.items])
    references = [item.answer for item in bench.items]
    flags = [is_correct(p, item.answer, item.match) for p, item in zip(predictions, bench.items)]
    metrics = {"accuracy": sum(flags) / len(flags), "bleu": bleu(predictions, references),
               "rouge_l": rouge_l(predictions, references)}
    return metrics, [{"prediction": p, "correct": f} for p, f in zip(predictions, flags)]


def score(loaded, bench: Benchmark) -> tuple[dict, list[dict]]:
    loaded.activate()
    return (score_mc if bench.kind == "mc" else score_exact)(loaded, bench)
