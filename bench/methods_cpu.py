"""Peak RSS and samples/s of every training method on the embedded SmolLM2-135M, 5 steps each, one process per
method (so each peak is its own). Writes a dated table into BENCHMARKS.md.

    python3 bench/methods_cpu.py [--steps 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from report import cpu_description, write_section

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"full": [], "freeze": ["freeze_layers=4"], "lora": [], "dora": [],
           "qlora-4": ["method=qlora", "quantization_bit=4"], "qlora-8": ["method=qlora", "quantization_bit=8"]}
COMMON = ["dataset=examples/data/haneul_faq.jsonl", "cutoff_len=256", "per_device_batch_size=4",
          "gradient_accumulation_steps=2", "val_size=0", "logging_steps=1", "learning_rate=1e-4"]


def run(name: str, extra: list[str], steps: int, out: Path) -> dict:
    method = [] if any(e.startswith("method=") for e in extra) else [f"method={name}"]
    cmd = [sys.executable, "-m", "tunesmith", "train", *COMMON, f"max_steps={steps}", f"output_dir={out / name}",
           *method, *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the max over all children
    if status != 0:
        raise SystemExit(f"{name} failed: {proc.stderr.read()[-2000:]}")
    done = json.loads((out / name / "trainer_log.jsonl").read_text().splitlines()[-1])
    return {"method": name, "samples_per_s": done["samples_per_s"], "tokens_per_s": done["tokens_per_s"],
            "peak_rss_gib": usage.ru_maxrss / 2**20, "trainable": done["trainable_params"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(name, extra, args.steps, Path(tmp)) for name, extra in METHODS.items()]
    import torch
    import transformers

    lines = [f"## Training methods on CPU ({datetime.date.today()})", "",
             f"CPU: {cpu_description()}; torch "
             f"{torch.__version__}, transformers {transformers.__version__}. Embedded SmolLM2-135M-Instruct, "
             f"quickstart data, 8 rows per step (4 x 2), cutoff 256, {args.steps} steps, fp32. Command: "
             f"`python3 bench/methods_cpu.py --steps {args.steps}`.",
             "", "| method | trainable params | samples/s | tokens/s | peak RSS (GiB) |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['trainable']:,} | {r['samples_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
              f"{r['peak_rss_gib']:.2f} |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    write_section("## Training methods on CPU", table)


if __name__ == "__main__":
    main()
