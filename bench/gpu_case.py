"""GPU case of bench/train_throughput.py: a Llama-3-8B-shaped model with random bf16 weights (vocab 128256, hidden
4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads), alpaca rows whose lengths follow
../shared/bench/instruction_lengths.json, 16 rows per optimizer step:

- tunesmith LoRA (bf16) and QLoRA (nf4), through `tunesmith train` with its defaults;
- the seed recipe (seed_recipe.py: HF Trainer + PEFT, padded micro-batch 2 x 8, gradient checkpointing, AdamW8bit),
  LoRA bf16 and QLoRA nf4.

Tokens/s count real tokens (no padding) over the steps after the first; peak memory is torch's max allocated; MFU
is tokens/s x 4 x parameters against the measured bf16 matmul rate. No weights are written or read: the model folder
holds a config and a tokenizer (any, e.g. the embedded SmolLM2's, from --tokenizer), and each runner draws the
random weights on the GPU itself (seeded), so the 8B case fits one short device session.

    python3 bench/train_throughput.py --gpu [--tokenizer DIR] [--steps 6] [--shape llama3-8b|tiny]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import write_section
from word_problems import make_rows

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "llama3-8b": {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 8},
    "tiny": {"vocab_size": 128256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},  # a CPU dry run of the plumbing
}
RUNS = {  # name: (runner, extra)
    "tunesmith LoRA bf16": ("tunesmith", []),
    "tunesmith QLoRA nf4": ("tunesmith", ["method=qlora"]),
    "seed recipe LoRA bf16 (2 x 8, checkpointing, AdamW8bit)": ("seed", ["--method", "lora"]),
    "seed recipe QLoRA nf4 (2 x 8, checkpointing, AdamW8bit)": ("seed", ["--method", "qlora"]),
}


def write_config(shape: str, tokenizer_dir: str, out: Path) -> int:
    """A model folder holding only config.json and the tokenizer: both runners draw the random weights on the
    device themselves (`train_from_scratch=true`, seed_recipe.py --from-scratch), so the 16 GB of an 8B model are
    never written or read. Returns the parameter count (counted on the meta device)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, rope_theta=500000.0,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config.save_pretrained(out)
    tok.save_pretrained(out)
    with torch.device("meta"):
        return sum(p.numel() for p in LlamaForCausalLM(config).parameters())


def matmul_rate(dtype) -> float:
    """Measured dense matmul FLOP/s: the denominator of MFU."""
    import time

    import torch

    n = 8192 if torch.cuda.is_available() else 1024
    a, b = torch.randn(n, n, dtype=dtype, device="cuda" if torch.cuda.is_available() else "cpu"), None
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def run_tunesmith(model: Path, rows: Path, out: Path, steps: int, dtype: str, extra: list[str]) -> dict:
    args = [f"model={model}", f"dataset={rows}", "template=alpaca", "cutoff_len=2048", "per_device_batch_size=2",
            "gradient_accumulation_steps=8", f"max_steps={steps}", "lora_rank=16", "lora_alpha=16",
            "learning_rate=1e-4", "lr_scheduler=constant", "shuffle=false", "val_size=0", f"dtype={dtype}",
            "optimizer=adamw_8bit", "train_from_scratch=true", f"output_dir={out}", "overwrite_output_dir=true",
            *extra]
    proc = subprocess.run([sys.executable, "-m", "tunesmith", "train", *args], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:200]}
    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    per_step = [r["tokens_per_s"] for r in records if "tokens_per_s" in r and not r.get("done")][1:]
    return {"tokens_per_s": statistics.median(per_step) if per_step else records[-1]["tokens_per_s"],
            "peak_gib": records[-1].get("peak_gpu_memory_gib")}


def run_seed(model: Path, rows: Path, steps: int, extra: list[str]) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("seed_recipe.py")), str(model), str(rows),
                           "--steps", str(steps), "--from-scratch", *extra], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    import torch

    parser = argparse.ArgumentParser(prog="train_throughput.py --gpu")
    parser.add_argument("--shape", choices=SHAPES, default="llama3-8b")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--only", default=None, help="run only the variants whose name contains this")
    args = parser.parse_args(argv)
    if args.tokenizer is None:
        from tunesmith.model.loader import resolve_model

        args.tokenizer = resolve_model(None)
    cuda = torch.cuda.is_available()
    dtype, dtype_name = (torch.bfloat16, "bf16") if cuda else (torch.float32, "fp32")
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TUNESMITH_BENCH_TMP")) as tmp:
        work = Path(tmp)
        params = write_config(args.shape, args.tokenizer, work / "model")
        from transformers import AutoTokenizer

        rows = work / "rows.json"
        rows.write_text(json.dumps(make_rows(16 * args.steps, 0, AutoTokenizer.from_pretrained(args.tokenizer))))
        for name, (runner, extra) in RUNS.items():
            if args.only and args.only not in name:
                continue
            results[name] = (run_tunesmith(work / "model", rows, work / "out", args.steps, dtype_name, extra)
                             if runner == "tunesmith" else run_seed(work / "model", rows, args.steps, extra))
            print(name, results[name], flush=True)
    rate = matmul_rate(dtype)
    device = torch.cuda.get_device_name() if cuda else "CPU (dry run)"
    lines = [f"## Training throughput on GPU: {args.shape} ({datetime.date.today()})", "",
             f"{device}, torch {torch.__version__}; random {dtype_name} weights ({params / 1e9:.2f} B parameters), "
             f"16 rows per optimizer step from bench/word_problems.py (lengths of instruction_lengths.json), "
             f"{args.steps} steps, the first not counted. Measured {dtype_name} matmul: {rate / 1e12:.0f} TFLOP/s; "
             f"MFU = tokens/s x 4 x parameters / that rate. Command: `python3 bench/train_throughput.py --gpu "
             f"--shape {args.shape} --steps {args.steps}`.", "",
             "| variant | tokens/s | peak GPU memory | MFU |", "|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | |")
            continue
        mfu = r["tokens_per_s"] * 4 * params / rate
        peak = f"{r['peak_gib']:.1f} GiB" if r.get("peak_gib") is not None else "n/a"
        lines.append(f"| {name} | {r['tokens_per_s']:.0f} | {peak} | {100 * mfu:.1f}% |")
    print("\n".join(lines))
    if cuda:
        write_section(f"## Training throughput on GPU: {args.shape}", "\n".join(lines))
