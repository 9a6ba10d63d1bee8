"""Serving speed of each available engine on the same model file: one stream, then 8 concurrent streams, greedy
128-token answers through the official `openai` client against a real `tunesmith serve` on 127.0.0.1. Writes a
dated table into BENCHMARKS.md, with the CPU and the instruction sets that decide the numbers.

    python3 bench/serve_engines.py [--gguf FILE.gguf] [--max-tokens 128] [--repeats 3]

Without --gguf the embedded SmolLM2-135M-Instruct is exported once to a Q8_0 GGUF by tunesmith's own exporter.
Engines: transformers (our fast path, its automatic dtype; bf16 and fp32 for reference), llamacpp and, as the
reference users compare with, llama-cpp-python's own server (both when llama-cpp-python is installed). A second
table times one decoding step of each path without HTTP, the transformers forward the engine used before included.
Run it on a quiet machine: on 2 cores any other busy process slows torch's threads many times.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from report import cpu_description, write_section

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Write a long story about a bike that gets lost in Seoul.", "Explain in detail how a bicycle gear works.",
           "Describe a full day at a bike rental shop, hour by hour.", "Write a long letter to a friend about cycling.",
           "List and explain twenty tips for riding safely in a city.", "Tell the history of the bicycle at length.",
           "Write a detailed guide to fixing a flat tyre.", "Describe ten famous cycling routes and what makes them."]
def default_gguf() -> Path:
    from tunesmith.export import export_run
    from tunesmith.model.loader import cache_dir, resolve_model

    out = cache_dir() / "bench" / "smollm2-135m-q8"
    found = sorted(out.glob("*.Q8_0.gguf")) if out.exists() else []
    if found:
        return found[0]
    return export_run(resolve_model(None), out, quant="q8_0", progress=False).gguf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], port: int) -> subprocess.Popen:
    """`tunesmith serve ARGS`, or with args ["llama_cpp.server", ...] llama-cpp-python's own server (the reference
    users compare with: one request at a time, no batching)."""
    import httpx

    log = tempfile.TemporaryFile()  # noqa: SIM115 - it lives as long as the server, past this function
    if args[:1] == ["llama_cpp.server"]:
        command = [sys.executable, "-m", *args, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "tunesmith", "serve", *args, "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"server {' '.join(args)} exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def answer(client, i: int, max_tokens: int) -> int:
    r = client.chat.completions.create(model=client.model_name, max_tokens=max_tokens, temperature=0,
                                       messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
    return r.usage.completion_tokens


def tokens_per_second(client, streams: int, max_tokens: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        tokens = sum(pool.map(lambda i: answer(client, i, max_tokens), range(streams)))
    return tokens / (time.perf_counter() - started)


def measure(args: list[str], max_tokens: int, repeats: int) -> tuple[float, float, str]:
    from openai import OpenAI

    port = free_port()
    server = start_server(args, port)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=600, max_retries=0)
        client.model_name = client.models.list().data[0].id
        answer(client, 0, 16)  # warm-up: first-use allocations, page faults
        single = statistics.median(tokens_per_second(client, 1, max_tokens) for _ in range(repeats))
        eight = statistics.median(tokens_per_second(client, 8, max_tokens) for _ in range(repeats))
        import httpx

        health = httpx.get(f"http://127.0.0.1:{port}/health")
        described = health.json()["engines"] if health.status_code == 200 else "llama.cpp, one request at a time"
    finally:
        server.terminate()
        server.wait(30)
    return single, eight, described


def decoding_steps(gguf: Path, tokens: int, repeats: int) -> list[str]:
    """Engine level, no HTTP: ms per decoding step of each path on the same file (best of `repeats`), to show where
    the time goes. "before" is transformers' own forward (the engine before the fast path)."""
    import torch

    from tunesmith.infer import llamacpp
    from tunesmith.infer.engine import Engine, Request, SamplingParams
    from tunesmith.infer.loading import load_for_inference

    loaded = load_for_inference(str(gguf))
    ids = loaded.encode_chat([{"role": "user", "content": PROMPTS[0]}])

    def fresh() -> Engine:
        return Engine(loaded.model, loaded.tokenizer, loaded.engine.stop_token_ids)

    paths = [("transformers forward, fp32 (before)", fresh().use("fp32", fast=False)),
             ("fast path, fp32", fresh().use("fp32")), ("fast path, bf16", fresh().use("bf16")),
             ("fast path, int8", fresh().use("int8"))]
    if llamacpp.installed():
        backend = llamacpp.LlamaCppBackend(gguf, 8)
        paths.append(("llama.cpp", Engine(None, loaded.tokenizer, loaded.engine.stop_token_ids | backend.stop_tokens(),
                                          backend=backend)))

    def ms_per_step(engine: Engine, rows: int) -> float:
        requests = [Request(ids, SamplingParams(max_new_tokens=tokens, temperature=0)) for _ in range(rows)]
        batch, steps = engine.prefill(requests), 0
        started = time.perf_counter()
        while batch.requests:
            engine.step(batch)
            steps += 1
        return (time.perf_counter() - started) / steps * 1000

    lines = []
    for label, engine in paths:
        ms_per_step(engine, 1)  # warm-up
        one = min(ms_per_step(engine, 1) for _ in range(repeats))
        eight = min(ms_per_step(engine, 8) for _ in range(repeats))
        lines.append(f"| {label} | {one:.1f} | {1000 / one:.1f} | {eight:.1f} | {8000 / eight:.0f} |")
        print(lines[-1], flush=True)
    return [f"Engine level (no HTTP), {torch.get_num_threads()} threads, {tokens} greedy tokens, best of {repeats}:",
            "", "| decoding path | ms per token, 1 row | tokens/s | ms per step, 8 rows | tokens/s |",
            "|---|---|---|---|---|", *lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", default=None, help="the model file every engine serves (default: SmolLM2 Q8_0)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gguf = Path(args.gguf) if args.gguf else default_gguf()
    engines = [("transformers", ["--engine", "transformers"]),
               ("transformers, --dtype bf16", ["--engine", "transformers", "--dtype", "bf16"]),
               ("transformers, --dtype fp32", ["--engine", "transformers", "--dtype", "fp32"])]
    try:
        import llama_cpp

        engines.append((f"llamacpp (llama-cpp-python {llama_cpp.__version__})", ["--engine", "llamacpp"]))
        try:
            import llama_cpp.server.app  # noqa: F401 - its own extra: pip install 'llama-cpp-python[server]'

            engines.append((f"reference: llama-cpp-python {llama_cpp.__version__}'s own server",
                            ["llama_cpp.server", "--model", str(gguf), "--n_ctx", "2048", "--verbose", "false"]))
        except ImportError:
            print("llama-cpp-python's server is not installed (pip install 'llama-cpp-python[server]'): the "
                  "reference row is left out", file=sys.stderr)
    except ImportError:
        print("llama-cpp-python is not installed: the llamacpp engine is left out", file=sys.stderr)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for label, flags in engines:
        single, eight, described = measure(flags if flags[0] == "llama_cpp.server" else [str(gguf), *flags],
                                           args.max_tokens, args.repeats)
        rows.append(f"| {label} | {described} | {single:.1f} | {eight:.1f} | {eight / single:.2f}x |")
        print(rows[-1], flush=True)
    steps = decoding_steps(gguf, 64, args.repeats)
    import torch

    # Only the load before the first server says whether others were busy: by the end it counts this bench too.
    busy = load > 0.25 * (os.cpu_count() or 1)
    caveat = (f"**Provisional:** other processes were running (load average {load:.2f} at the start); with few "
              "cores, the spinning threads of torch and llama.cpp then slow down many times over. Re-run on a quiet "
              "machine." if busy else f"Quiet machine: load average {load:.2f} at the start.")
    table = "\n".join([
        f"## Serving engines on CPU ({datetime.date.today()})", "",
        (f"CPU: {cpu_description()}. torch {torch.__version__}, Python {platform.python_version()}. Model file: "
         f"`{gguf.name}` ({gguf.stat().st_size / 1e6:.0f} MB), served by each engine in turn; greedy chat answers of "
         f"up to {args.max_tokens} tokens through the `openai` client; medians of {args.repeats} runs. Command: "
         f"`python3 bench/serve_engines.py`."), "", caveat, "",
        "| engine | decoding path | 1 stream, tokens/s | 8 concurrent, aggregate tokens/s | 8 vs 1 |",
        "|---|---|---|---|---|", *rows, "", *steps])
    print(table)
    write_section("## Serving engines on CPU", table)


if __name__ == "__main__":
    main()
