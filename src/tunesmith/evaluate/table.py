"""The metrics of eval_results.json as text: which rows, how each value is written, and how it was scored. The
printed table, report.html and the Web UI's Evaluate tab all use these, so a number looks the same everywhere."""

from __future__ import annotations


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
