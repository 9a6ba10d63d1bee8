"""Blind A/B: two models answer the same prompts, and a judge picks the better answer of each pair, shown as A and B.

- Prompts: any file training reads (the first user turn of each conversation, with its system prompt if it has
  one; preference rows: their prompt), rows holding only a prompt ({"prompt"}, {"instruction"} or {"question"}), or
  a benchmark file (its questions; multiple-choice questions with their lettered choices). `--ab-max N` keeps the
  first N.
- Answers: each model in turn (one in memory at a time), with its own chat template, greedy, at most
  256 new tokens (`--ab-max-new-tokens`), batched through its Engine.
- Order: a seeded coin per pair decides which model's answer is shown as A. A model judge sees every pair twice, in
  that order and swapped, and the two verdicts are combined as `abstats.combine` says; a person judges each pair
  once, in that order (`human.py`), and learns which model was which only at the end.
- Result, for model 2 (the second --model) against model 1 (the first): wins, ties, losses, invalid pairs, a win
  rate with ties as half and its 95% Wilson interval; every pair with both answers and the verdicts.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tunesmith.data.formats import Document, to_canonical
from tunesmith.data.sources import read_rows
from tunesmith.errors import ConfigError, DataError
from tunesmith.evaluate.abstats import combine, preferred_model, summarize
from tunesmith.evaluate.benchmarks import generate_replies, load_benchmark, mc_prompt
from tunesmith.evaluate.human import load_preferences, run_session
from tunesmith.evaluate.judges import JUDGE_MAX_TOKENS, judge_messages, make_judge
from tunesmith.evaluate.verdict import parse_verdict
from tunesmith.stages.sft import SFTStage

log = logging.getLogger("tunesmith")
AB_MAX_NEW_TOKENS = 256
PROMPT_ONLY_KEYS = ("prompt", "instruction", "question")


@dataclass
class Prompt:
    text: str
    system: str | None = None
    location: str = ""


@dataclass
class ABOptions:
    prompts_file: str
    judge: str  # an http(s):// endpoint, a model spec for a local judge, or "human"
    judge_model: str | None = None
    max_prompts: int | None = None
    preferences_file: str | None = None  # human mode; default OUT/ab_preferences.jsonl
    max_new_tokens: int = AB_MAX_NEW_TOKENS  # of each answer
    judge_max_tokens: int = JUDGE_MAX_TOKENS  # of each judge reply
    judge_insecure: bool = False  # a plain http:// judge on another machine (the key travels unencrypted)
    seed: int = 0
    stdin: TextIO | None = None  # human mode; default the terminal
    stdout: TextIO | None = None


def ab_options(prompts_file: str | None, judge: str | None, judge_model: str | None = None,
               max_prompts: int | None = None, preferences_file: str | None = None,
               max_new_tokens: int | None = None, judge_insecure: bool = False) -> ABOptions | None:
    """The A/B settings of `tunesmith eval`, or None without --ab; flags that only make sense together are checked."""
    if (prompts_file is None) != (judge is None):
        raise ConfigError("eval: --ab PROMPTS_FILE and --judge (URL, model or human) go together; give both")
    if prompts_file is None:
        if judge_model or max_prompts or preferences_file or max_new_tokens or judge_insecure:
            raise ConfigError("eval: --judge-model, --judge-insecure, --ab-max, --ab-file and --ab-max-new-tokens "
                              "belong to an A/B test; add --ab PROMPTS_FILE --judge ...")
        return None
    for name, value in (("--ab-max", max_prompts), ("--ab-max-new-tokens", max_new_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f"eval: {name} must be >= 1, got {value}")
    if preferences_file and judge != "human":
        raise ConfigError("eval: --ab-file holds a person's choices; use it with --judge human")
    if judge_insecure and not judge.startswith("http://"):
        raise ConfigError("eval: --judge-insecure allows a plain http:// --judge endpoint on another machine; "
                          "drop it for this judge")
    return ABOptions(prompts_file, judge, judge_model, max_prompts, preferences_file,
                     max_new_tokens or AB_MAX_NEW_TOKENS, judge_insecure=judge_insecure)


def _is_benchmark(row: dict) -> bool:
    return "question" in row and "answer" in row and set(row) <= {"question", "answer", "choices", "subject"}


def _prompt_only(location: str, row: dict) -> Prompt:
    key = next(k for k in PROMPT_ONLY_KEYS if k in row)
    text, system = row[key], row.get("system")
    if isinstance(text, list):  # TRL's conversational prompt: its first question, as for conversations below
        first: dict = {}
        for turn in (t for t in text if isinstance(t, dict)):
            first.setdefault(turn.get("role"), turn.get("content"))
        text, system = first.get("user"), first.get("system", first.get("developer"))
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{location}: '{key}' should be non-empty text; write the prompt or delete the row")
    extra = row.get("input")
    if isinstance(extra, str) and extra.strip():
        text = f"{text}\n\n{extra}"
    return Prompt(text, system if isinstance(system, str) and system.strip() else None, location)


def load_prompts(path: str, max_prompts: int | None = None) -> list[Prompt]:
    rows = read_rows(path, "test")
    first = rows[0][1]
    if _is_benchmark(first):
        bench = load_benchmark(path)
        prompts = [Prompt(mc_prompt(i) if i.choices else i.question, None, i.location) for i in bench.items]
    elif any(k in first for k in PROMPT_ONLY_KEYS) and not ({"output", "response", "completion", "answer", "chosen"}
                                                              & set(first)):
        prompts = [_prompt_only(location, row) for location, row in rows]
    else:
        prompts = []
        for item in map(SFTStage().adopt, to_canonical(rows)):  # a rendered chat in a text row has its question
            if isinstance(item, Document):
                raise DataError(f"{item.location}: a text row has no question to answer; give conversations, "
                                "instructions, prompts or a benchmark file to --ab")
            first_user = next(m["content"] for m in item.messages if m["role"] == "user")
            prompts.append(Prompt(first_user, item.system, item.location))
    return prompts[:max_prompts] if max_prompts else prompts


def format_ab(ab: dict) -> str:
    one, two = ab["model_1"], ab["model_2"]
    how = "each pair judged in both orders" if ab["judge"]["kind"] != "human" else "one judgment per pair"
    judge = ab["judge"]["name"]
    lines = [f"A/B: {two} (model 2) vs {one} (model 1) on {ab['n_prompts']} prompts; judge: {judge}, {how}",
             f"  {two}: {ab['wins']} wins, {ab['ties']} ties, {ab['losses']} losses of {ab['judged']} judged pairs"]
    notes = [f"{ab['invalid']} invalid ({ab['invalid_replies']} unparseable judge replies, left out)"]
    if ab["judge"]["kind"] != "human":
        notes.append(f"{ab['inconsistent']} inconsistent across orders (counted as ties)")
    notes += [f"{ab[k]} {k.replace('_', ' ')}" for k in ("skipped", "not_judged") if ab.get(k)]
    lines.append("  " + "; ".join(notes))
    if ab["win_rate"] is None:
        lines.append("  no pair was judged: no win rate")
    else:
        lo, hi = ab["ci95"]
        lines.append(f"  win rate of {two}: {100 * ab['win_rate']:.1f}% (ties count half), 95% CI "
                     f"{100 * lo:.1f}%-{100 * hi:.1f}% (Wilson)")
    return "\n".join(lines)


class ABTest:
    """Set up before any model loads (prompts read, judge reached), given each model's answers, then judged."""

    def __init__(self, options: ABOptions, labels: list[str], out_dir: Path, device: str = "auto"):
        if len(labels) != 2:
            raise ConfigError(f"eval: --ab compares exactly two models; give --model twice (got {len(labels)})")
        self.options, self.labels = options, labels
        self.prompts = load_prompts(options.prompts_file, options.max_prompts)
        self.human = options.judge == "human"
        self.judge = (None if self.human else
                      make_judge(options.judge, options.judge_model, device, options.judge_max_tokens,
                                 options.judge_insecure))
        if self.judge is not None:
            self.judge.check()
        self.preferences = Path(options.preferences_file or out_dir / "ab_preferences.jsonl")
        if self.human:  # a preferences file from another test is refused now, not after the answers are generated
            load_preferences(self.preferences, [{"index": i, "prompt": p.text} for i, p in enumerate(self.prompts)],
                             labels)
        rng = random.Random(options.seed)
        self.shown_as_a = [rng.choice((1, 2)) for _ in self.prompts]  # the model whose answer is A (first order)
        self.answers: dict[int, list[str]] = {}

    def collect(self, model: int, loaded) -> None:
        """Model `model` (1 or 2) answers every prompt."""
        conversations = [([{"role": "system", "content": p.system}] if p.system else [])
                         + [{"role": "user", "content": p.text}] for p in self.prompts]
        self.add_answers(model, generate_replies(loaded, conversations, self.options.max_new_tokens))

    def add_answers(self, model: int, answers: list[str]) -> None:
        if len(answers) != len(self.prompts):
            raise ValueError(f"{len(answers)} answers for {len(self.prompts)} prompts")
        self.answers[model] = answers

    def pairs(self) -> list[dict]:
        return [{"index": i, "prompt": p.text, "answers": {self.labels[0]: self.answers[1][i],
                                                           self.labels[1]: self.answers[2][i]},
                 "shown": {"A": self.labels[a - 1], "B": self.labels[2 - a]}}
                for i, (p, a) in enumerate(zip(self.prompts, self.shown_as_a))]

    def run(self) -> dict:
        pairs = self.pairs()
        if self.human:
            run_session(pairs, self.labels, self.preferences, self.options.stdin or sys.stdin,
                        self.options.stdout or sys.stdout)
            judge = {"kind": "human", "name": f"a person in the terminal (preferences: {self.preferences})"}
        else:
            self._judge(pairs)
            judge = {"kind": self.judge.kind, "name": self.judge.describe()}
        outcomes = [p["outcome"] for p in pairs]
        replies = [j for p in pairs for j in p["judgments"] if j.get("choice") != "skip"]
        return {"prompts_file": str(self.options.prompts_file), "judge": judge, "model_1": self.labels[0],
                "model_2": self.labels[1], "n_prompts": len(pairs), **summarize(outcomes),
                "invalid_replies": sum(j["verdict"] is None for j in replies),
                "inconsistent": sum(p.get("inconsistent", False) for p in pairs), "pairs": pairs}

    def _judge(self, pairs: list[dict]) -> None:
        asked = []  # per pair: the model shown as A in the first order, then in the swapped order
        conversations = []
        for pair, first in zip(pairs, self.shown_as_a):
            for a in (first, 3 - first):
                asked.append(a)
                answer = pair["answers"]
                conversations.append(judge_messages(pair["prompt"], answer[self.labels[a - 1]],
                                                    answer[self.labels[2 - a]]))
        log.info("judging %d pairs in both orders: %d requests to %s", len(pairs), len(conversations),
                 self.judge.describe())
        replies = self.judge.ask_all(conversations)
        for i, pair in enumerate(pairs):
            judgments, preferences = [], []
            for a, reply in zip(asked[2 * i:2 * i + 2], replies[2 * i:2 * i + 2]):
                verdict = parse_verdict(reply)
                preferences.append(preferred_model(verdict, a))
                judgments.append({"A": self.labels[a - 1], "B": self.labels[2 - a], "reply": reply,
                                  "verdict": verdict, "preferred": self._name(preferences[-1])})
            outcome, inconsistent = combine(*preferences)
            pair.update(judgments=judgments, outcome=outcome, inconsistent=inconsistent)

    def _name(self, preferred: int | None) -> str | None:
        return None if preferred is None else "tie" if preferred == 0 else self.labels[preferred - 1]
