"""Aggregate decoding throughput of `tunesmith serve` with 1 client vs 8 concurrent clients, plus a stress run of
16 concurrent streaming clients x 10 requests (errors and hangs counted), all through the official `openai` client
against a real server on 127.0.0.1. Writes a dated table into BENCHMARKS.md.

    python3 bench/serve_concurrency.py [--model RUN_DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from report import cpu_description, write_section
from serve_engines import free_port, start_server

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What are your customer support hours?", "How much does a monthly rental cost?",
             "What is the name of your app?", "Can I bring my dog on a bike?", "고객센터 운영 시간이 어떻게 되나요?",
             "Tell me about Haneul Bikes.", "How do I report a lost bike?", "Do you accept cash?"]


def one_request(client, i: int, max_tokens: int, stream: bool = False) -> int:
    messages = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
    if not stream:
        r = client.chat.completions.create(model=client.model_name, messages=messages, max_tokens=max_tokens,
                                           temperature=0.8, seed=i)
        return r.usage.completion_tokens
    tokens = 0
    for chunk in client.chat.completions.create(model=client.model_name, messages=messages, max_tokens=max_tokens,
                                                temperature=0.8, seed=i, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return tokens


def throughput(client, clients: int, requests_each: int, max_tokens: int) -> float:
    start = time.time()
    with ThreadPoolExecutor(clients) as pool:
        jobs = [pool.submit(lambda c: sum(one_request(client, c * 100 + k, max_tokens)
                                          for k in range(requests_each)), c) for c in range(clients)]
        tokens = sum(j.result() for j in jobs)
    return tokens / (time.time() - start)


def stress(client, clients: int, requests_each: int, max_tokens: int) -> tuple[int, int, float]:
    errors, start = 0, time.time()

    def worker(c: int) -> int:
        failed = 0
        for k in range(requests_each):
            try:
                one_request(client, c * 100 + k, max_tokens, stream=True)
            except Exception:
                failed += 1
        return failed

    with ThreadPoolExecutor(clients) as pool:
        errors = sum(pool.map(worker, range(clients)))
    return clients * requests_each, errors, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="run dir or model; default: the embedded SmolLM2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    from openai import OpenAI

    port = free_port()
    server = start_server([args.model] if args.model else [], port)
    try:
        # A request that hangs fails after 120 s instead of blocking the run: a hang is counted as an error.
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=120, max_retries=0)
        client.model_name = client.models.list().data[0].id
        one_request(client, 0, 8)  # warm-up
        single = [throughput(client, 1, 4, args.max_tokens) for _ in range(args.repeats)]
        eight = [throughput(client, 8, 4, args.max_tokens) for _ in range(args.repeats)]
        total, errors, seconds = stress(client, 16, 10, 32)
    finally:
        server.terminate()
        server.wait(30)
    s, e = statistics.median(single), statistics.median(eight)
    import torch

    table = "\n".join([
        f"## Serving concurrency on CPU ({datetime.date.today()})", "",
        f"CPU: {cpu_description()}. torch {torch.__version__}. Model: "
        f"{args.model or 'embedded SmolLM2-135M-Instruct'}; chat completions through the `openai` client, "
        f"max_tokens {args.max_tokens}, temperature 0.8; medians of {args.repeats} runs. Command: "
        f"`python3 bench/serve_concurrency.py`.", "",
        "| clients | aggregate completion tokens/s | ratio |", "|---|---|---|",
        f"| 1 (4 requests in a row) | {s:.1f} | 1.00 |",
        f"| 8 concurrent (4 requests each) | {e:.1f} | {e / s:.2f} |", "",
        f"Stress: 16 concurrent streaming clients x 10 requests (max_tokens 32): {total} requests, {errors} errors "
        f"or hangs, {seconds:.0f} s.", ""])
    print(table)
    write_section("## Serving concurrency on CPU", table)


if __name__ == "__main__":
    main()
