"""Benchmark files and how a model is scored on them.

A row's kind is told by its keys:
- multiple choice: {"question", "choices": [...], "answer": "A".. or a 0-based index} (an optional "subject" is ignored);
- exact answer:    {"question", "answer"} (answer text or a number).
Every row of a file must be of one kind. Files are read like training data (jsonl, json, csv, parquet), so a bad row
stops with `path:line: what; fix`.

Multiple choice: the prompt is the chat-templated user turn "question / A. ... / B. ... / Answer:"; each option's
text is scored by its summed log-likelihood as the assistant's answer, and the best one is the prediction. With
few-shot K, the first K rows of the file become earlier user/assistant turns (answered with the correct option's
text) and are not scored.

Exact answer: the question as one user turn, greedy decoding (temperature 0, at most 64 new tokens), batched
through the model's Engine; correctness by `metrics.is_correct`.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError
from tunesmith.evaluate.metrics import bleu, is_correct, rouge_l
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


def _parse_row(location: str, row: dict) -> tuple[str, Item]:
    if "question" not in row or "answer" not in row:
        raise DataError(f"{location}: a benchmark row needs 'question' and 'answer' (plus 'choices' for multiple "
                        f"choice), got {sorted(row)}; add the missing keys")
    question = _text(row["question"], location, "question")
    if "choices" not in row or row["choices"] is None:
        return "exact", Item(question, _text(row["answer"], location, "answer"), location=location)
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
    for location, row in read_rows(path):
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


def score_mc(loaded, bench: Benchmark) -> tuple[dict, list[dict]]:
    tok = loaded.tokenizer
    correct, samples = 0, []
    for item in bench.items:
        prompt = loaded.encode_chat(mc_messages(item, bench.shots))
        options = [tok(c, add_special_tokens=False)["input_ids"] for c in item.choices]
        scores = option_logprobs(loaded.model, prompt, options)
        picked = max(range(len(scores)), key=scores.__getitem__)
        correct += picked == item.answer_index
        samples.append({"prediction": LETTERS[picked], "correct": picked == item.answer_index})
    return {"accuracy": correct / len(bench.items)}, samples


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
    flags = [is_correct(p, r) for p, r in zip(predictions, references)]
    metrics = {"accuracy": sum(flags) / len(flags), "bleu": bleu(predictions, references),
               "rouge_l": rouge_l(predictions, references)}
    return metrics, [{"prediction": p, "correct": f} for p, f in zip(predictions, flags)]


def score(loaded, bench: Benchmark) -> tuple[dict, list[dict]]:
    loaded.activate()
    return (score_mc if bench.kind == "mc" else score_exact)(loaded, bench)
