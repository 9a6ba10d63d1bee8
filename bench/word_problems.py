"""Alpaca rows for the throughput benchmark: arithmetic word problems with worked answers, whose token lengths follow
../shared/bench/instruction_lengths.json (7,473 lengths of a real public set of math word problems, SmolLM2
tokenizer, alpaca prompt incl. EOS; mean 179). The real text cannot travel, so the rows are generated, seeded, to
the same lengths: the same work per row for both trainers, and text a model can actually learn.

    python3 bench/word_problems.py OUT.json [--rows 512] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

LENGTHS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "instruction_lengths.json"
NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Mark", "Jisoo", "Minho"]
ITEMS = ["apples", "clips", "books", "stickers", "marbles", "cookies", "pencils", "tickets", "shells", "cards"]
PROMPT_TOKENS = 31  # the alpaca preamble, "### Instruction:", "### Response:" and EOS, in SmolLM2 tokens


def _problem(rng: random.Random, steps: int) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(5, 60)
    question = [f"{name} has {total} {item}."]
    answer = [f"{name} starts with {total} {item}."]
    for _ in range(steps):
        n = rng.randint(2, 40)
        kind = rng.choice(["buy", "give", "double"] if total < 500 else ["give"])
        if kind == "give" and n >= total:
            kind = "buy"
        if kind == "buy":
            question.append(f"Then {name} buys {n} more {item}.")
            answer.append(f"After buying {n} more, {name} has {total} + {n} = {total + n} {item}.")
            total += n
        elif kind == "give":
            friend = rng.choice([x for x in NAMES if x != name])
            question.append(f"{name} gives {n} {item} to {friend}.")
            answer.append(f"Giving {n} to {friend} leaves {total} - {n} = {total - n} {item}.")
            total -= n
        else:
            question.append(f"Then the number of {item} {name} has doubles.")
            answer.append(f"Doubling gives {total} * 2 = {total * 2} {item}.")
            total *= 2
    question.append(f"How many {item} does {name} have now?")
    answer.append(f"#### {total}")
    return " ".join(question), " ".join(answer)


def make_rows(n: int, seed: int, tokenizer) -> list[dict]:
    """`n` rows whose prompt + answer lengths are drawn from the real length distribution (within a few tokens)."""
    rng = random.Random(seed)
    lengths = json.loads(LENGTHS.read_text())
    rows = []
    for _ in range(n):
        target = rng.choice(lengths) - PROMPT_TOKENS
        steps, best, problem_seed = 1, None, rng.random()
        while True:  # grow the problem step by step; keep the size closest to the drawn length
            q, a = _problem(random.Random(problem_seed), steps)
            size = len(tokenizer(q + "\n\n" + a)["input_ids"])
            if best is None or abs(size - target) < abs(best[0] - target):
                best = (size, {"instruction": q, "input": "", "output": a})
            if size >= target:
                break
            steps += 1
        row = best[1]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from tunesmith.model.loader import load_tokenizer, resolve_model

    rows = make_rows(args.rows, args.seed, load_tokenizer(resolve_model(None)))
    Path(args.out).write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
