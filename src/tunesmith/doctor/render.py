"""A doctor Report as terminal text (colours when the output is a terminal) or as one self-contained HTML page."""

from __future__ import annotations

import html

from tunesmith.doctor.report import NOTE, OK, PROBLEM, Report

MARK = {OK: "ok", NOTE: "note", PROBLEM: "FIX"}
ANSI = {"answer": "\x1b[30;42m", "chosen": "\x1b[30;42m", "rejected": "\x1b[30;41m", "dim": "\x1b[2m",
        OK: "\x1b[32m", NOTE: "\x1b[33m", PROBLEM: "\x1b[1;31m", "bold": "\x1b[1m", "reset": "\x1b[0m"}
# The report's own styles, scoped to its wrapper so the Web UI can show it inside its page.
CSS = """.ts-doctor pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.6rem;border-radius:4px}
.ts-doctor mark.answer,.ts-doctor mark.chosen{background:#c8f0c8}.ts-doctor mark.rejected{background:#f6c8c8}
.ts-doctor .prompt{color:#666}.ts-doctor .ok{color:#1a7f37}.ts-doctor .note{color:#9a6700}
.ts-doctor .problem{color:#cf222e;font-weight:bold}.ts-doctor table{border-collapse:collapse}
.ts-doctor td{padding:.15rem .8rem;border-bottom:1px solid #ddd}.ts-doctor td.n{text-align:right}"""
PAGE_CSS = "body{font:14px/1.45 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _visible(text: str) -> str:
    """Line ends shown, so trailing newlines and spaces inside the trained part can be seen."""
    return text.replace("\n", "\u21b5\n")


def to_text(report: Report, color: bool = False) -> str:
    paint = (lambda style, text: f"{ANSI[style]}{text}{ANSI['reset']}") if color else (lambda style, text: text)
    out = [paint("bold", f"tunesmith doctor: {report.model}, template {report.template}, answers end with "
                         f"{report.stop!r}")]
    if report.rows:
        legend = paint("answer", "trained") if color else "[[trained]]"
        out.append(f"\nFirst rows as the model sees them ({legend}, the rest is context; \u21b5 = line end):")
    for row in report.rows:
        flag = " - DROPPED: no answer left within cutoff_len" if row.dropped else \
            " - cut at cutoff_len" if row.truncated else ""
        out.append(f"\n{row.location} ({row.tokens} tokens){flag}")
        body = "".join(paint(p.kind, _visible(p.text)) if p.kind != "prompt" and color else
                       f"[[{_visible(p.text)}]]" if p.kind != "prompt" else _visible(p.text) for p in row.pieces)
        out.append(body)
    out.append("\nChecks:")
    for f in report.findings:
        out.append(f"  {paint(f.status, MARK[f.status].ljust(4))} {f.check}: {f.verdict}")
        if f.fix and f.status != OK:
            out.append(f"       fix: {f.fix}")
    if report.memory:
        m = report.memory
        out.append(f"\nMemory on {m.device} ({_size(m.free_bytes)} free):")
        for line in m.lines:
            out.append(f"  {line.label:<58} {_size(line.bytes):>12}")
        out.append(f"  {'activations per token (no checkpointing)':<58} {_size(m.activations_per_token):>12}")
        out.append(f"  {'activations per token (checkpointing)':<58} {_size(m.activations_per_token_checkpointed):>12}")
        out.append(f"  train would choose micro-batches of {m.token_budget} tokens, checkpointing "
                   f"{'on' if m.checkpointing else 'off'}: about {_size(m.total_bytes)} in all - "
                   f"{'fits' if m.fits else 'does NOT fit'}")
    verdict = "fine to train" if not report.problems else f"{len(report.problems)} to fix before training"
    out.append("\n" + paint(PROBLEM if report.problems else OK, verdict))
    return "\n".join(out) + "\n"


def to_html(report: Report) -> str:
    """A page of its own (`tunesmith doctor --html FILE`)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>tunesmith doctor</title>"
            f"<style>{PAGE_CSS}</style></head><body><h1>tunesmith doctor</h1>{to_fragment(report)}</body></html>")


def to_fragment(report: Report) -> str:
    """The report as one <div> with its styles, for a page that has its own (the Web UI's Check button)."""
    esc = html.escape
    parts = [f"<div class='ts-doctor'><style>{CSS}</style><p>{esc(report.model)}, template {esc(report.template)}, "
             f"answers end with <code>{esc(report.stop)}</code></p><h2>Rows as the model sees them</h2>"
             "<p><mark class='answer'>trained</mark> <span class='prompt'>context</span></p>"]
    for row in report.rows:
        flag = " &mdash; <b class='problem'>dropped</b>" if row.dropped else \
            " &mdash; <b class='note'>cut at cutoff_len</b>" if row.truncated else ""
        body = "".join(f"<span class='prompt'>{esc(p.text)}</span>" if p.kind == "prompt" else
                       f"<mark class='{p.kind}'>{esc(p.text)}</mark>" for p in row.pieces)
        parts.append(f"<h3>{esc(row.location)} ({row.tokens} tokens){flag}</h3><pre>{body}</pre>")
    parts.append("<h2>Checks</h2><table>")
    for f in report.findings:
        fix = f"<br><small>fix: {esc(f.fix)}</small>" if f.fix and f.status != OK else ""
        parts.append(f"<tr><td class='{f.status}'>{MARK[f.status]}</td><td>{esc(f.check)}</td>"
                     f"<td>{esc(f.verdict)}{fix}</td></tr>")
    parts.append("</table>")
    if report.memory:
        m = report.memory
        rows = [(line.label, line.bytes) for line in m.lines] + [
            ("activations per token (no checkpointing)", m.activations_per_token),
            ("activations per token (checkpointing)", m.activations_per_token_checkpointed)]
        parts.append(f"<h2>Memory on {esc(m.device)} ({_size(m.free_bytes)} free)</h2><table>"
                     + "".join(f"<tr><td>{esc(label)}</td><td class='n'>{_size(n)}</td></tr>" for label, n in rows)
                     + f"</table><p>train would choose micro-batches of {m.token_budget} tokens, checkpointing "
                     f"{'on' if m.checkpointing else 'off'}: about {_size(m.total_bytes)} in all &mdash; "
                     f"{'fits' if m.fits else '<b class=problem>does not fit</b>'}</p>")
    verdict = "fine to train" if not report.problems else f"{len(report.problems)} to fix before training"
    parts.append(f"<h2 class='{PROBLEM if report.problems else OK}'>{verdict}</h2></div>")
    return "".join(parts)
