"""Orchestration: check every input file first, then load each model in turn, measure it, and write
DIR/eval_results.json (+ report.html). Only one model is in memory at a time.

eval_results.json:
  {"models": [{"label", "spec"}], "dataset": path|null,
   "benchmarks": [{"name", "path", "kind", "n", "few_shot"}],
   "metrics": {label: {"eval_loss", "perplexity", "BENCH/accuracy", "BENCH/bleu", "BENCH/rouge_l", ...}},
   "samples": {BENCH: [{"question", "answer", "choices"?, "predictions": {label: text}, "correct": {label: bool}}]}}
"""

from __future__ import annotations

import gc
import json
import logging
import math
from pathlib import Path

import torch

from tunesmith.data.dataset import encode_conversation, encode_documents
from tunesmith.data.formats import Document, Preference, to_canonical
from tunesmith.data.packing import pack_step
from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError
from tunesmith.evaluate.benchmarks import Benchmark, load_benchmark, score
from tunesmith.train.stages import causal_lm_loss

log = logging.getLogger("tunesmith")
CUTOFF_LEN = 1024
TOKEN_BUDGET = 4096


def load_dataset_items(path: str, max_samples: int | None = None) -> list:
    items = to_canonical(read_rows(path))
    for item in items:
        if isinstance(item, Preference):
            raise DataError(f"{item.location}: preference rows have no single answer to measure loss on; give "
                            "instruction/output, conversations, messages or text rows")
    return items[:max_samples] if max_samples else items


@torch.no_grad()
def dataset_loss(loaded, items: list) -> dict:
    """Token-weighted mean cross-entropy on the answers (every token for text rows), as training measures it."""
    loaded.activate()
    cutoff = min(CUTOFF_LEN, loaded.context_length)
    documents = [i for i in items if isinstance(i, Document)]
    examples = encode_documents(documents, loaded.tokenizer, cutoff, "dataset") if documents else []
    for item in items:
        if not isinstance(item, Document):
            ex = encode_conversation(item, loaded.template, loaded.tokenizer, cutoff)
            if ex is not None:
                examples.append(ex)
    if not examples:
        raise DataError(f"dataset: no row has an answer within the first {cutoff} tokens; use shorter rows")
    device = next(loaded.model.parameters()).device
    total, count = 0.0, 0
    for batch in pack_step(examples, max(TOKEN_BUDGET, max(len(e) for e in examples))):
        out = causal_lm_loss(loaded.model, batch.to(device))
        total += float(out.loss_sum)
        count += out.num_targets
    loss = total / max(count, 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 700.0)), "eval_tokens": count}


def _labels(specs: list[str]) -> list[str]:
    labels = []
    for spec in specs:
        label = "base" if spec in ("", "base") else (Path(spec).name or spec)
        base, k = label, 2
        while label in labels:
            label, k = f"{base}#{k}", k + 1
        labels.append(label)
    return labels


def run_eval(specs: list[str], dataset: str | None, benchmark_paths: list[str], out: str,
             max_samples: int | None = None, few_shot: int = 0, device: str = "auto") -> dict:
    from tunesmith.evaluate.report import write_report
    from tunesmith.infer.loading import load_for_inference

    if not dataset and not benchmark_paths:
        raise DataError("eval: nothing to measure; give --dataset FILE and/or --benchmark FILE")
    items = load_dataset_items(dataset, max_samples) if dataset else None  # bad rows stop before any model loads
    benches: list[Benchmark] = [load_benchmark(p, few_shot, max_samples) for p in benchmark_paths]
    names = [b.name for b in benches]
    for b in benches:
        if names.count(b.name) > 1:
            b.name = f"{b.name}@{Path(b.path).parent.name or '.'}"
    labels = _labels(specs)
    results = {"models": [{"label": lab, "spec": spec or "base"} for lab, spec in zip(labels, specs)],
               "dataset": dataset,
               "benchmarks": [{"name": b.name, "path": b.path, "kind": b.kind, "n": len(b.items),
                               "few_shot": len(b.shots)} for b in benches],
               "metrics": {}, "samples": {}}
    for b in benches:
        results["samples"][b.name] = [
            {"question": it.question, "answer": it.answer, **({"choices": it.choices} if it.choices else {}),
             "predictions": {}, "correct": {}} for it in b.items]
    for label, spec in zip(labels, specs):
        log.info("evaluating %s", label)
        loaded = load_for_inference(None if spec in ("", "base") else spec, device, name=label)
        metrics = {}
        if items is not None:
            metrics.update(dataset_loss(loaded, items))
        for b in benches:
            scores, samples = score(loaded, b)
            metrics.update({f"{b.name}/{k}": v for k, v in scores.items()})
            for row, s in zip(results["samples"][b.name], samples):
                row["predictions"][label], row["correct"][label] = s["prediction"], s["correct"]
        results["metrics"][label] = metrics
        del loaded
        gc.collect()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval_results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    write_report(results, out_dir / "report.html")
    return results


def metric_rows(results: dict) -> list[str]:
    seen: list[str] = []
    for metrics in results["metrics"].values():
        seen += [k for k in metrics if k not in seen and k != "eval_tokens"]
    return seen


def format_value(name: str, value) -> str:
    if value is None:
        return "-"
    if name.endswith("/accuracy"):
        return f"{100 * value:.1f}%"
    if name.endswith("/rouge_l"):
        return f"{value:.3f}"
    if name.endswith("/bleu"):
        return f"{value:.1f}"
    return f"{value:.4f}" if name == "eval_loss" else f"{value:.2f}"


def format_table(results: dict) -> str:
    labels = [m["label"] for m in results["models"]]
    rows = [["metric", *labels]]
    for name in metric_rows(results):
        rows.append([name, *(format_value(name, results["metrics"][lab].get(name)) for lab in labels)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
