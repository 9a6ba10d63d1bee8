"""Training throughput, side by side in one invocation, medians over repeats; writes a dated table to BENCHMARKS.md.

CPU case (default when no CUDA GPU): tunesmith vs LLaMA-Factory 0.9.5 (installed by this script into its own venv,
see llamafactory_ref.py) on the same work: the embedded SmolLM2-135M-Instruct as safetensors, the same 512 alpaca
rows (bench/word_problems.py), LoRA r16 all-linear (alpha 16, dropout 0), cutoff 512, micro-batch 2 x accumulation
8, 8 steps, lr 1e-4 constant, rows in file order for both. Reports samples/s, tokens/s, peak RSS, each tool's own
last logged step loss and, measured the same way for both final adapters, the loss on the 128 rows trained on.

GPU case (`--gpu`, default when CUDA is present): see gpu_case.py.

    python3 bench/train_throughput.py [--repeats 3]
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
import time
from pathlib import Path

import llamafactory_ref as lf
from report import cpu_description, write_section
from word_problems import make_rows

ROOT = Path(__file__).resolve().parents[1]
HP = {"lora_rank": 16, "lora_alpha": 16, "cutoff_len": 512, "micro_batch": 2, "accumulation": 8, "steps": 8,
      "learning_rate": 1e-4, "seed": 42}
ROWS = 512
LF_DEFAULTS, LF_BEST, TS_DEFAULTS = "LLaMA-Factory (defaults)", "LLaMA-Factory, bf16: true", "tunesmith (defaults)"
LF_AVX2, TS_AVX2 = "LLaMA-Factory (defaults), AVX2 only", "tunesmith (defaults), AVX2 only"
# An AVX2-only CPU, emulated on a bigger one: torch's own kernels, oneDNN and MKL held to AVX2 instructions. bf16
# matmuls then run emulated (~1 GFLOP/s), so tunesmith's `dtype=auto` finds bf16 slow and trains in fp32, as it would
# there; the cores' width and speed stay this CPU's.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def run_tunesmith(model: Path, rows_file: Path, out: Path, extra: list[str], env: dict | None = None) -> dict:
    args = [f"model={model}", f"dataset={rows_file}", "template=alpaca", f"cutoff_len={HP['cutoff_len']}",
            f"per_device_batch_size={HP['micro_batch']}", f"gradient_accumulation_steps={HP['accumulation']}",
            f"max_steps={HP['steps']}", f"lora_rank={HP['lora_rank']}", f"lora_alpha={HP['lora_alpha']}",
            f"learning_rate={HP['learning_rate']}", "lr_scheduler=constant", f"seed={HP['seed']}", "shuffle=false",
            "val_size=0", f"output_dir={out}", "overwrite_output_dir=true", *extra]
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "train", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"tunesmith failed: {proc.stderr.read()[-3000:]}")
    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    done = records[-1]
    return {"samples_per_s": done["samples_per_s"], "losses": [r["loss"] for r in records if "loss" in r],
            "peak_rss_gib": usage.ru_maxrss / 2**20, "wall_s": time.time() - started,
            "micro_batch_tokens": done.get("micro_batch_tokens"), "precision": done.get("precision")}


def trained_rows_loss(model: Path, adapter: Path, rows_file: Path, n: int) -> float:
    """Token-weighted answer loss of base + adapter on the first n rows, encoded by tunesmith's alpaca template:
    one yardstick for both tools' adapters."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunesmith.data.packing import pack_step
    from tunesmith.model.attention import use_varlen_attention
    from tunesmith.stages.base import causal_lm_loss

    examples = encoded_rows(model, rows_file, n)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    use_varlen_attention(base)  # row-confined attention: the stock packed mask is quadratic in the pack length
    net = PeftModel.from_pretrained(base, adapter).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in pack_step(examples, 4096):
            out = causal_lm_loss(net, batch)
            total, count = total + out.loss_sum.item(), count + out.num_targets
    return total / count


def cpu_case(repeats: int) -> None:
    from tunesmith.model.loader import load_tokenizer, resolve_model
    from tunesmith.train.precision import cpu_has_fast_bf16

    model = Path(resolve_model(None))
    python = lf.ensure_venv()
    trained = HP["steps"] * HP["micro_batch"] * HP["accumulation"]
    fast_bf16 = cpu_has_fast_bf16()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows_file = work / "rows.json"
        rows_file.write_text(json.dumps(make_rows(ROWS, 0, load_tokenizer(str(model)))))
        tokens = sum(len(e) for e in encoded_rows(model, rows_file, trained))
        # name -> (how to run it once, its adapter folder)
        variants = {LF_DEFAULTS: (lambda: lf.run(python, lf.write_config(work, model, rows_file, HP), work),
                                  work / "lf_out")}
        if fast_bf16:  # LLaMA-Factory at its best on this CPU: HF Trainer's bf16 autocast
            variants[LF_BEST] = (lambda: lf.run(python, lf.write_config(work, model, rows_file, HP, True, "lfbf16"),
                                                work), work / "lfbf16_out")
        variants[TS_DEFAULTS] = (lambda: run_tunesmith(model, rows_file, work / "ts_out", []), work / "ts_out")
        if fast_bf16:  # what bf16 is worth to tunesmith here, and both tools as an AVX2-only CPU would run them
            variants["tunesmith dtype=fp32"] = (lambda: run_tunesmith(model, rows_file, work / "ts_fp32",
                                                                      ["dtype=fp32"]), work / "ts_fp32")
            variants[LF_AVX2] = (lambda: lf.run(python, lf.write_config(work, model, rows_file, HP, name="lfavx2"),
                                                work, AVX2_ONLY), work / "lfavx2_out")
            variants[TS_AVX2] = (lambda: run_tunesmith(model, rows_file, work / "ts_avx2", [], AVX2_ONLY),
                                 work / "ts_avx2")
        runs: dict[str, list] = {name: [] for name in variants}
        for i in range(repeats):  # interleaved, so a slow spell of the machine hits all
            for name, (run_once, _) in variants.items():
                runs[name].append(run_once())
            print(f"repeat {i + 1}: " + ", ".join(f"{k} {v[-1]['samples_per_s']:.3f} samples/s"
                                                 for k, v in runs.items()), flush=True)
        losses = {name: trained_rows_loss(model, folder, rows_file, trained) for name, (_, folder) in variants.items()}
        lf_versions = {m: lf.version_of(python, m) for m in ("llamafactory", "torch", "transformers", "peft")}
    _write_cpu_table(runs, losses, tokens, trained, repeats, lf_versions)


def encoded_rows(model: Path, rows_file: Path, n: int) -> list:
    """The first n rows as tunesmith trains them: alpaca template, cut at cutoff_len."""
    from tunesmith.data.dataset import encode_conversation
    from tunesmith.data.formats import to_canonical
    from tunesmith.data.sources import read_rows
    from tunesmith.data.templates import get_template
    from tunesmith.model.loader import load_tokenizer

    tokenizer = load_tokenizer(str(model))
    template = get_template("alpaca", tokenizer)
    return [encode_conversation(c, template, tokenizer, HP["cutoff_len"])
            for c in to_canonical(read_rows(str(rows_file)))[:n]]


def _write_cpu_table(runs: dict, losses: dict, tokens: int, trained: int, repeats: int, lf_versions: dict) -> None:
    import peft
    import torch
    import transformers

    med = {k: {m: statistics.median(r[m] for r in v) for m in ("samples_per_s", "peak_rss_gib", "wall_s")}
           for k, v in runs.items()}
    speed = {name: m["samples_per_s"] for name, m in med.items()}
    ratio = speed[TS_DEFAULTS] / speed[LF_DEFAULTS]
    best = f", {speed[TS_DEFAULTS] / speed[LF_BEST]:.2f}x LLaMA-Factory at its best (bf16)" if LF_BEST in speed else ""
    gaps = ", ".join(f"{100 * (losses[TS_DEFAULTS] - losses[name]) / losses[name]:+.2f}% vs {name}"
                     for name in losses if name.startswith("LLaMA") and name != LF_AVX2)
    avx2 = ""
    if TS_AVX2 in speed:
        avx2 = (f" As an AVX2-only CPU would run them ({' '.join(f'{k}={v}' for k, v in AVX2_ONLY.items())}; "
                f"tunesmith's precision then: {runs[TS_AVX2][-1].get('precision')}): **"
                f"{speed[TS_AVX2] / speed[LF_AVX2]:.2f}x LLaMA-Factory's defaults, loss "
                f"{100 * (losses[TS_AVX2] - losses[LF_AVX2]) / losses[LF_AVX2]:+.2f}%.**")
    ts_budget = runs[TS_DEFAULTS][-1]["micro_batch_tokens"]
    precision = runs[TS_DEFAULTS][-1].get("precision")
    lines = [f"## Training throughput on CPU: tunesmith vs LLaMA-Factory ({datetime.date.today()})", "",
             f"CPU: {cpu_description()}. tunesmith: torch {torch.__version__}, transformers {transformers.__version__}, "
             f"peft {peft.__version__}. LLaMA-Factory {lf_versions['llamafactory']} in its own venv: torch "
             f"{lf_versions['torch']}, transformers {lf_versions['transformers']}, peft {lf_versions['peft']}.", "",
             f"Work: embedded SmolLM2-135M-Instruct (safetensors, fp32), {ROWS} alpaca rows from "
             f"bench/word_problems.py, LoRA r16 all-linear, cutoff 512, micro-batch 2 x accumulation 8, 8 steps "
             f"= {trained} rows ({tokens} tokens), rows in file order. LLaMA-Factory runs with its defaults "
             f"(gradient checkpointing, padded micro-batches, fp32) and, on a CPU with fast bf16, also with `bf16: "
             f"true`; tunesmith with its defaults (packed rows with row-confined attention, chunked head + loss on "
             f"answer tokens, micro-batches of up to {ts_budget} tokens, precision: {precision}). Median of "
             f"{repeats} interleaved repeats. Command: "
             f"`python3 bench/train_throughput.py --repeats {repeats}`.", "",
             "| | samples/s | tokens/s | peak RSS | process wall | last step loss (own log) | "
             "loss on the 128 trained rows (same yardstick) |", "|---|---|---|---|---|---|---|"]
    for name in runs:
        m = med[name]
        lines.append(f"| {name} | {m['samples_per_s']:.3f} | {m['samples_per_s'] * tokens / trained:.0f} | "
                     f"{m['peak_rss_gib']:.2f} GiB | {m['wall_s']:.0f} s | {runs[name][-1]['losses'][-1]:.4f} | "
                     f"{losses[name]:.4f} |")
    lines += ["", f"**tunesmith: {ratio:.2f}x LLaMA-Factory's defaults{best} in samples/s; loss on the trained rows "
              f"{gaps}.** Each tool's own logged loss differs in definition (LLaMA-Factory's alpaca template also "
              f"trains the `\\n\\n` after EOS), hence the common yardstick.{avx2}"]
    write_section("## Training throughput on CPU", "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="the GPU case (default when CUDA is available)")
    args, rest = parser.parse_known_args()
    import torch

    if args.gpu or torch.cuda.is_available():
        import gpu_case

        gpu_case.main(rest)
    else:
        cpu_case(args.repeats)


if __name__ == "__main__":
    main()
