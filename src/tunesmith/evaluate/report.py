"""A self-contained report.html: inline CSS, no scripts, no external assets. Sections: models, metrics, and the
exact-answer questions with every model's answer side by side."""

from __future__ import annotations

from html import escape
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans KR",sans-serif;margin:2rem auto;max-width:70rem;
color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700;background:#dafbe1}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#656d76;font-size:.9rem}
"""


def _best(name: str, values: list) -> float | None:
    nums = [v for v in values if isinstance(v, (int, float))]
    if len(nums) < 2 or name == "eval_tokens":
        return None
    return min(nums) if name in ("eval_loss", "perplexity") else max(nums)


def render_report(results: dict) -> str:
    from tunesmith.evaluate.runner import format_value, metric_rows

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

    parts.append("<section id='metrics'><h2>Metrics</h2><table><tr><th>metric</th>")
    parts += [f"<th>{escape(lab)}</th>" for lab in labels]
    parts.append("</tr>")
    for name in metric_rows(results):
        values = [results["metrics"][lab].get(name) for lab in labels]
        best = _best(name, values)
        parts.append(f"<tr><td>{escape(name)}</td>")
        for v in values:
            cls = "num best" if best is not None and v == best else "num"
            parts.append(f"<td class='{cls}'>{escape(format_value(name, v))}</td>")
        parts.append("</tr>")
    parts.append("</table><p class='muted'>Accuracy in %, BLEU 0-100, ROUGE-L F 0-1; best value highlighted."
                 "</p></section>")

    parts.append("<section id='samples'><h2>Sample answers</h2>")
    exact = [b for b in results["benchmarks"] if b["kind"] == "exact"]
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
    parts.append("</section></body></html>\n")
    return "".join(parts)


def write_report(results: dict, path: Path) -> None:
    path.write_text(render_report(results), encoding="utf-8")
