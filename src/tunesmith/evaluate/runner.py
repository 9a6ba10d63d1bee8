"""Orchestration: check every input file (and reach the A/B judge) first, then load each model in turn, measure it
and let it answer the A/B prompts, then judge the A/B pairs, and write DIR/eval_results.json (+ report.html). Only
one model is in memory at a time (a local judge loads after the compared models are gone).

eval_results.json:
  {"models": [{"label", "spec"}], "dataset": path|null,
   "benchmarks": [{"name", "path", "kind", "n", "few_shot"}],
   "metrics": {label: {"eval_loss", "perplexity", "BENCH/accuracy", "BENCH/accuracy_norm" (multiple choice),
                       "BENCH/bleu", "BENCH/rouge_l" (exact answer), ...}},
   "samples": {BENCH: [{"question", "answer", "choices"?, "predictions": {label: text}, "correct": {label: bool}}]},
   "training": {label: {"run", "train": [[step, loss]], "eval": [[step, eval_loss]], "checkpoint_step"}},
   "ab": {"model_1", "model_2", "judge": {"kind", "name"}, "prompts_file", "n_prompts", "wins", "ties", "losses"
          (of model 2 vs model 1), "judged", "invalid", "invalid_replies", "inconsistent", "skipped", "not_judged",
          "win_rate", "ci95": [low, high], "ci_method",
          "pairs": [{"index", "prompt", "answers": {label: text}, "shown": {"A": label, "B": label},
                     "judgments": [{"A", "B", "reply"|"choice", "verdict", "preferred"}], "outcome", "inconsistent"}]}}
  ("training" only for models that are run directories or checkpoints; "ab" only with --ab.)
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
from tunesmith.evaluate.abtest import ABOptions, ABTest
from tunesmith.evaluate.benchmarks import Benchmark, load_benchmark, score
from tunesmith.evaluate.curves import training_curves
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
             max_samples: int | None = None, few_shot: int = 0, device: str = "auto",
             ab: ABOptions | None = None) -> dict:
    from tunesmith.evaluate.report import write_report
    from tunesmith.infer.loading import load_for_inference

    if not dataset and not benchmark_paths and ab is None:
        raise DataError("eval: nothing to measure; give --dataset FILE, --benchmark FILE and/or --ab PROMPTS_FILE "
                        "--judge ...")
    items = load_dataset_items(dataset, max_samples) if dataset else None  # bad rows stop before any model loads
    benches: list[Benchmark] = [load_benchmark(p, few_shot, max_samples) for p in benchmark_paths]
    names = [b.name for b in benches]
    for b in benches:
        if names.count(b.name) > 1:
            b.name = f"{b.name}@{Path(b.path).parent.name or '.'}"
    labels = _labels(specs)
    out_dir = Path(out)
    abtest = ABTest(ab, labels, out_dir, device) if ab is not None else None
    results = {"models": [{"label": lab, "spec": spec or "base"} for lab, spec in zip(labels, specs)],
               "dataset": dataset,
               "benchmarks": [{"name": b.name, "path": b.path, "kind": b.kind, "n": len(b.items),
                               "few_shot": len(b.shots)} for b in benches],
               "metrics": {}, "samples": {}}
    for b in benches:
        results["samples"][b.name] = [
            {"question": it.question, "answer": it.answer, **({"choices": it.choices} if it.choices else {}),
             "predictions": {}, "correct": {}} for it in b.items]
    training = {label: curves for label, spec in zip(labels, specs) if (curves := training_curves(spec))}
    if training:
        results["training"] = training
    for number, (label, spec) in enumerate(zip(labels, specs), 1):
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
        if abtest is not None:
            log.info("%s answers %d A/B prompts", label, len(abtest.prompts))
            abtest.collect(number, loaded)
        del loaded
        gc.collect()
    if abtest is not None:
        results["ab"] = abtest.run()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval_results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    write_report(results, out_dir / "report.html")
    return results


def metric_rows(results: dict) -> list[str]:
    seen: list[str] = []
    for metrics in results["metrics"].values():
        seen += [k for k in metrics if k not in seen and k != "eval_tokens"]
    return seen


ACCURACIES = ("/accuracy", "/accuracy_norm")
SCORING = {  # (benchmark kind, metric): how the number was scored, shown beside the table and in report.html
    ("mc", "accuracy"): "multiple choice, the option with the highest summed log-likelihood (lm-eval acc)",
    ("mc", "accuracy_norm"): "multiple choice, the option with the highest log-likelihood per character of its "
                             "text (lm-eval acc_norm)",
    ("exact", "accuracy"): "the final answer: the number after the last marker (####, answer is, 정답은, 답:) or "
                           "else the last number, compared as numbers; text: the whole answer, or the row's "
                           "'match' rule",
}


def metric_scoring(results: dict, name: str) -> str | None:
    """How a `BENCH/metric` number was scored, for the benchmark kinds whose accuracy can be scored several ways."""
    bench, _, metric = name.rpartition("/")
    kinds = {b["name"]: b["kind"] for b in results.get("benchmarks", [])}
    return SCORING.get((kinds.get(bench), metric))


def format_value(name: str, value) -> str:
    if value is None:
        return "-"
    if name.endswith(ACCURACIES):
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
    lines += [f"* {name}: {note}" for name in metric_rows(results) if (note := metric_scoring(results, name))]
    return "\n".join(lines)
