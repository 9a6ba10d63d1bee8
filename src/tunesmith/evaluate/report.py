"""A self-contained report.html: inline CSS and SVG, no scripts, no external assets. Sections: models, loss curves
of the runs behind the models, metrics before vs after (the first --model is the reference), the blind A/B result,
the exact-answer questions and the A/B pairs with every model's answer side by side."""

from __future__ import annotations

from html import escape
from pathlib import Path

from tunesmith.evaluate.report_ab import ab_samples_section, ab_section
from tunesmith.evaluate.report_svg import line_chart
from tunesmith.evaluate.table import format_value, metric_rows, metric_scoring

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans KR",sans-serif;margin:2rem auto;max-width:70rem;
color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700;background:#dafbe1}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#656d76;font-size:.9rem}
td.better{color:#1a7f37}td.worse{color:#cf222e}td.answer{white-space:pre-wrap}
.reply{color:#656d76;font-size:.8rem;white-space:pre-wrap;margin:.2rem 0 .4rem}
.abbar{display:flex;height:1.6rem;margin:.6rem 0;border-radius:4px;overflow:hidden;font-size:.8rem;color:#fff}
.abbar span{display:flex;align-items:center;justify-content:center;white-space:nowrap;overflow:hidden}
.abbar .win{background:#1a7f37}.abbar .tie{background:#8c959f}.abbar .loss{background:#cf222e}
svg.chart{max-width:100%;height:auto;font-family:inherit}svg.chart text{fill:#1f2328}
"""
LOWER_IS_BETTER = ("eval_loss", "perplexity")


def _best(name: str, values: list) -> float | None:
    nums = [v for v in values if isinstance(v, (int, float))]
    if len(nums) < 2 or name == "eval_tokens":
        return None
    return min(nums) if name in LOWER_IS_BETTER else max(nums)


def _delta_cell(name: str, value, reference) -> str:
    """`value - reference` in the metric's unit, green when better, red when worse."""
    if not isinstance(value, (int, float)) or not isinstance(reference, (int, float)):
        return "<td class='num'>-</td>"
    delta = value - reference
    if name.endswith(("/accuracy", "/accuracy_norm")):
        text = f"{100 * delta:+.1f} pts"
    elif name.endswith("/rouge_l"):
        text = f"{delta:+.3f}"
    elif name.endswith("/bleu"):
        text = f"{delta:+.1f}"
    else:
        text = f"{delta:+.4f}" if name == "eval_loss" else f"{delta:+.2f}"
    better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
    cls = "" if delta == 0 else (" better" if better else " worse")
    return f"<td class='num{cls}'>{escape(text)}</td>"


def _curves_section(results: dict) -> str:
    training = results.get("training") or {}
    if not training:
        return ""
    parts = ["<section id='curves'><h2>Loss curves</h2>"]
    for label, curves in training.items():
        series = [{"name": "train loss", "color": "#1f77b4", "points": curves["train"]},
                  {"name": "eval loss", "color": "#d62728", "points": curves["eval"], "dots": True}]
        at = curves.get("checkpoint_step")
        note = f" (dashed line: this checkpoint, step {at})" if at is not None else ""
        parts.append(f"<h3>{escape(label)}</h3><p class='muted'>run {escape(curves['run'])}{note}</p>")
        parts.append(line_chart([s for s in series if s["points"]], marker_x=at))
    parts.append("<p class='muted'>From each run's trainer_log.jsonl. Eval loss falling with train loss means the "
                 "model learns what generalises; eval loss rising while train loss falls means overfitting.</p>"
                 "</section>")
    return "".join(parts)


def _metrics_section(results: dict, labels: list[str]) -> str:
    names = metric_rows(results)
    title = "Metrics: before vs after" if len(labels) > 1 else "Metrics"
    if not names:
        return (f"<section id='metrics'><h2>{title}</h2><p class='muted'>No dataset or benchmark was given: "
                "nothing to measure here.</p></section>")
    parts = [f"<section id='metrics'><h2>{title}</h2><table><tr><th>metric</th>"]
    parts += [f"<th>{escape(lab)}</th>" for lab in labels]
    parts += [f"<th>change {escape(lab)} vs {escape(labels[0])}</th>" for lab in labels[1:]]
    parts.append("</tr>")
    for name in names:
        values = [results["metrics"][lab].get(name) for lab in labels]
        best = _best(name, values)
        scoring = metric_scoring(results, name)  # which scoring rule gave this number (MC: summed vs per character)
        note = f"<div class='muted'>{escape(scoring)}</div>" if scoring else ""
        parts.append(f"<tr><td>{escape(name)}{note}</td>")
        for v in values:
            cls = "num best" if best is not None and v == best else "num"
            parts.append(f"<td class='{cls}'>{escape(format_value(name, v))}</td>")
        parts += [_delta_cell(name, v, values[0]) for v in values[1:]]
        parts.append("</tr>")
    reference = (f" The first model, {escape(labels[0])}, is the reference ('before'); each change column is "
                 "another model minus it, green where better (lower loss and perplexity, higher accuracy, BLEU and "
                 "ROUGE-L).") if len(labels) > 1 else ""
    parts.append("</table><p class='muted'>Accuracy in %, BLEU 0-100, ROUGE-L F 0-1; best value highlighted."
                 f"{reference}</p></section>")
    return "".join(parts)


def _samples_section(results: dict, labels: list[str]) -> str:
    exact = [b for b in results["benchmarks"] if b["kind"] == "exact"]
    if not exact and results.get("ab"):
        return ""  # the A/B pairs are the answers side by side
    parts = ["<section id='samples'><h2>Sample answers</h2>"]
    if not exact:
        parts.append("<p class='muted'>No exact-answer benchmark was given.</p>")
    for b in exact:
        parts.append(f"<h3>{escape(b['name'])}</h3><table><tr><th>question</th><th>reference</th>")
        parts += [f"<th>{escape(lab)}</th>" for lab in labels]
        parts.append("</tr>")
        for row in results["samples"][b["name"]]:
            parts.append(f"<tr><td>{escape(row['question'])}</td><td>{escape(row['answer'])}</td>")
            for lab in labels:
                ok = row["correct"].get(lab)
                mark = "<span class='ok'>&#10003;</span> " if ok else "<span class='bad'>&#10007;</span> "
                parts.append(f"<td>{mark}{escape(row['predictions'].get(lab, ''))}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


def render_report(results: dict) -> str:
    labels = [m["label"] for m in results["models"]]
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>tunesmith eval</title>",
             f"<style>{CSS}</style></head><body><h1>tunesmith eval</h1>"]

    parts.append("<section id='models'><h2>Models</h2><table><tr><th>label</th><th>model</th></tr>")
    for m in results["models"]:
        parts.append(f"<tr><td>{escape(m['label'])}</td><td>{escape(str(m['spec']))}</td></tr>")
    parts.append("</table><p class='muted'>")
    if results.get("dataset"):
        parts.append(f"Dataset: {escape(str(results['dataset']))}. ")
    for b in results["benchmarks"]:
        kind = "multiple choice" if b["kind"] == "mc" else "exact answer"
        shots = f", {b['few_shot']}-shot" if b["few_shot"] else ""
        parts.append(f"Benchmark {escape(b['name'])}: {kind}, {b['n']} questions{shots}. ")
    parts.append("</p></section>")

    parts += [_curves_section(results), _metrics_section(results, labels), ab_section(results.get("ab")),
              _samples_section(results, labels)]
    parts.append(ab_samples_section(results.get("ab")))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(results: dict, path: Path) -> None:
    path.write_text(render_report(results), encoding="utf-8")
