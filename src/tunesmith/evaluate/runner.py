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

from tunesmith.data.formats import Preference, to_canonical
from tunesmith.data.packing import pack_step
from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError
from tunesmith.evaluate.abtest import ABOptions, ABTest
from tunesmith.evaluate.benchmarks import Benchmark, load_benchmark, score
from tunesmith.evaluate.curves import training_curves
from tunesmith.evaluate.table import format_table, format_value, metric_rows  # noqa: F401 - the Web UI's names
from tunesmith.model.row_isolation import packed_rows_stay_apart
from tunesmith.run import EMBEDDED, RunDir
from tunesmith.stages.base import causal_lm_loss
from tunesmith.stages.pt import PretrainStage
from tunesmith.stages.sft import SFTStage

log = logging.getLogger("tunesmith")
CUTOFF_LEN = 1024
TOKEN_BUDGET = 4096


def load_dataset_items(path: str, max_samples: int | None = None) -> list:
    # Rendered chats in text rows are conversations, as stage=sft trains them: the loss is taken on their answers.
    items = [SFTStage().adopt(item) for item in to_canonical(read_rows(path, "validation"))]
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
    # Encoded by the training stages themselves: the loss is measured on exactly what training would learn.
    examples = []
    for stage in (PretrainStage(cutoff), SFTStage(cutoff)):
        rows = [i for i in items if isinstance(i, stage.rows)]
        try:
            examples += stage.encode(rows, loaded.template, loaded.tokenizer, "dataset") if rows else []
        except DataError:  # no row of this kind fits: the others may
            pass
    if not examples:
        raise DataError(f"dataset: no row has an answer within the first {cutoff} tokens; use shorter rows")
    device = next(loaded.model.parameters()).device
    total, count = 0.0, 0
    packed = packed_rows_stay_apart(loaded.model)
    for batch in pack_step(examples, max(TOKEN_BUDGET, max(len(e) for e in examples)), packed):
        out = causal_lm_loss(loaded.model, batch.to(device))
        total += float(out.loss_sum)
        count += out.num_targets
    loss = total / max(count, 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 700.0)), "eval_tokens": count}


def _labels(specs: list[str]) -> list[str]:
    labels = []
    for spec in specs:
        label = EMBEDDED if RunDir.open(spec).spec is None else (Path(spec).name or spec)
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
    results = {"models": [{"label": lab, "spec": spec or EMBEDDED} for lab, spec in zip(labels, specs)],
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
        loaded = load_for_inference(spec, device, name=label, int8=False)  # base and fine-tuned decoded alike
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
