"""What each training-speed lever is worth on this machine: one optimizer step (16 benchmark rows, LoRA r16
all-linear on the embedded SmolLM2-135M) timed with one lever changed at a time, median over repeats, in one
process. Writes a dated table into BENCHMARKS.md. The variants:

- plain: stock transformers path (SDPA with transformers' packed mask, full-logits cross-entropy on the kept
  positions), micro-batches of 2 x cutoff tokens;
- each of: row-confined varlen attention, chunked head + loss, one micro-batch per step (auto budget), gradient
  checkpointing, torch.compile of the decoder layers;
- tunesmith: the defaults `tunesmith train` uses.

    python3 bench/train_levers.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import cpu_description, write_section
from train_throughput import encoded_rows
from word_problems import make_rows

ROWS, CUTOFF = 16, 512


def _setup(varlen: bool, checkpointing: bool, compiled: bool):
    from tunesmith.model.attention import use_varlen_attention
    from tunesmith.model.loader import load_model, resolve_model
    from tunesmith.model.methods.lora import LoraMethod

    torch.manual_seed(0)
    base = load_model(resolve_model(None), torch.float32, torch.device("cpu"))
    if varlen:
        use_varlen_attention(base)
    model = LoraMethod(lora_rank=16, lora_alpha=16).wrap(base, checkpointing)
    if compiled:
        from tunesmith.train.loop import compile_layers

        compile_layers(model)
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def _examples(model: Path, tokenizer):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.json"
        path.write_text(json.dumps(make_rows(ROWS, 0, tokenizer)))
        return encoded_rows(model, path, ROWS)  # cut at CUTOFF, as in train_throughput


def step_seconds(examples, budget: int, chunked: bool, repeats: int, **setup) -> float:
    from tunesmith.data.packing import pack_step
    from tunesmith.stages.base import causal_lm_loss

    model, optimizer = _setup(**setup)
    batches = pack_step(examples, budget)
    targets = sum(b.num_targets for b in batches)
    times = []
    for i in range(repeats + 1):  # the first step warms up (allocator, compilation) and is not counted
        start = time.perf_counter()
        for batch in batches:
            (causal_lm_loss(model, batch, chunked=chunked).loss_sum / targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


VARIANTS = {  # name: (budget, chunked, setup)
    "plain (SDPA packed mask, full logits, 2 x cutoff tokens)": (2 * CUTOFF, False, {}),
    "+ varlen attention": (2 * CUTOFF, False, {"varlen": True}),
    "+ chunked head and loss": (2 * CUTOFF, True, {}),
    "+ whole step in one micro-batch": (ROWS * CUTOFF, False, {}),
    "+ gradient checkpointing": (2 * CUTOFF, False, {"checkpointing": True}),
    "+ torch.compile (decoder layers)": (2 * CUTOFF, False, {"compiled": True}),
    "tunesmith defaults: varlen + chunked + one micro-batch": (ROWS * CUTOFF, True, {"varlen": True}),
    "defaults + gradient checkpointing": (ROWS * CUTOFF, True, {"varlen": True, "checkpointing": True}),
    "defaults + torch.compile": (ROWS * CUTOFF, True, {"varlen": True, "compiled": True}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=None, help="run only variants whose name contains this")
    args = parser.parse_args()
    from tunesmith.model.loader import load_tokenizer, resolve_model

    model = Path(resolve_model(None))
    examples = _examples(model, load_tokenizer(str(model)))
    tokens = sum(len(e) for e in examples)
    results = {}
    for name, (budget, chunked, setup) in VARIANTS.items():
        if args.only and args.only not in name:
            continue
        setup = {"varlen": False, "checkpointing": False, "compiled": False, **setup}
        results[name] = step_seconds(examples, budget, chunked, args.repeats, **setup)
        print(f"{name}: {results[name]:.2f} s/step, {tokens / results[name]:.0f} tokens/s", flush=True)
    if args.only:
        return
    plain = results[next(iter(VARIANTS))]
    lines = [f"## Training levers on CPU ({datetime.date.today()})", "",
             f"One optimizer step = {ROWS} benchmark rows ({tokens} tokens, bench/word_problems.py), LoRA r16 "
             f"all-linear, embedded SmolLM2-135M fp32, {torch.get_num_threads()} threads, torch {torch.__version__}, "
             f"CPU: {cpu_description()}; "
             f"median of {args.repeats} steps after one warm-up step. Command: `python3 bench/train_levers.py`.", "",
             "| variant | s/step | tokens/s | speed-up vs plain |", "|---|---|---|---|"]
    for name, seconds in results.items():
        lines.append(f"| {name} | {seconds:.2f} | {tokens / seconds:.0f} | {plain / seconds:.2f}x |")
    write_section("## Training levers on CPU", "\n".join(lines))


if __name__ == "__main__":
    main()
