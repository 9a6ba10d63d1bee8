"""The report's A/B sections: the result (win/tie/loss, win rate and interval, invalid and inconsistent counts, the
judge) and every pair's prompt with both answers side by side and the verdicts."""

from __future__ import annotations

from html import escape

MAX_PAIRS_SHOWN = 200  # keeps report.html small enough to mail; eval_results.json holds every pair


def _bar(ab: dict) -> str:
    """A stacked bar of wins / ties / losses of model 2, widths in % of judged pairs."""
    judged = ab["judged"] or 1
    parts = []
    for key, cls in (("wins", "win"), ("ties", "tie"), ("losses", "loss")):
        if ab[key]:
            parts.append(f"<span class='{cls}' style='width:{100 * ab[key] / judged:.1f}%'>{key} {ab[key]}</span>")
    return f"<div class='abbar'>{''.join(parts)}</div>" if parts else ""


def ab_section(ab: dict | None) -> str:
    if not ab:
        return ""
    one, two = escape(ab["model_1"]), escape(ab["model_2"])
    human = ab["judge"]["kind"] == "human"
    rows = [("judge", escape(ab["judge"]["name"])),
            ("prompts", f"{ab['n_prompts']} from {escape(ab['prompts_file'])}"),
            (f"{two} wins", str(ab["wins"])), ("ties", str(ab["ties"])), (f"{two} losses", str(ab["losses"])),
            ("judged pairs", str(ab["judged"])),
            ("invalid pairs", f"{ab['invalid']} ({ab['invalid_replies']} unparseable judge replies; left out)")]
    if not human:
        inconsistent = (f"{ab['inconsistent']} (each order preferred a different answer: the judge followed the "
                        "position; counted as ties)")
        rows.append(("inconsistent pairs", inconsistent))
    rows += [(k.replace("_", " "), str(ab[k])) for k in ("skipped", "not_judged") if ab.get(k)]
    if ab["win_rate"] is not None:
        lo, hi = ab["ci95"]
        rate = f"<b>{100 * ab['win_rate']:.1f}%</b> (ties count half); 95% CI {100 * lo:.1f}% - {100 * hi:.1f}%"
        rows.append((f"win rate of {two}", rate))
    how = ("a person judged each pair once, not knowing which model wrote which answer" if human else
           "the judge saw every pair twice, with A and B swapped; a model wins a pair only when preferred in both "
           "orders")
    parts = [f"<section id='ab'><h2>Blind A/B: {two} (model 2) vs {one} (model 1)</h2>", _bar(ab), "<table>"]
    parts += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows]
    parts.append(f"</table><p class='muted'>Answers were shown as A and B in random order; {how}. Win rate = (wins + "
                 f"ties/2) / judged pairs; interval: {escape(ab['ci_method'])}. Above 50% favours {two}; an "
                 "interval that contains 50% means no clear difference on these prompts.</p></section>")
    return "".join(parts)


def _verdicts(pair: dict) -> str:
    lines = []
    for j in pair.get("judgments", []):
        if "choice" in j:  # a person
            said = {"A": "A", "B": "B", "tie": "tie", "skip": "skipped"}[j["choice"]]
        else:
            said = j["verdict"] or "unparseable"
        preferred = j["preferred"] or "-"
        reply = f"<div class='reply'>{escape(j['reply'][:300])}</div>" if "reply" in j else ""
        lines.append(f"<div>A = {escape(j['A'])}: <b>{escape(said)}</b> &rarr; {escape(str(preferred))}{reply}</div>")
    return "".join(lines) or "<span class='muted'>not judged</span>"


def ab_samples_section(ab: dict | None) -> str:
    if not ab:
        return ""
    one, two = ab["model_1"], ab["model_2"]
    shown = ab["pairs"][:MAX_PAIRS_SHOWN]
    parts = ["<section id='ab-samples'><h2>A/B answers side by side</h2>"]
    if len(ab["pairs"]) > len(shown):
        parts.append(f"<p class='muted'>The first {len(shown)} of {len(ab['pairs'])} pairs; eval_results.json "
                     "holds all.</p>")
    parts.append(f"<table><tr><th>prompt</th><th>{escape(one)} (model 1)</th><th>{escape(two)} (model 2)</th>"
                 "<th>verdicts</th><th>outcome for model 2</th></tr>")
    for pair in shown:
        outcome = pair["outcome"] + (" (inconsistent)" if pair.get("inconsistent") else "")
        cls = {"win": "ok", "loss": "bad"}.get(pair["outcome"], "muted")
        parts.append(f"<tr><td>{escape(pair['prompt'])}</td><td class='answer'>{escape(pair['answers'][one])}</td>"
                     f"<td class='answer'>{escape(pair['answers'][two])}</td><td>{_verdicts(pair)}</td>"
                     f"<td class='{cls}'>{escape(outcome)}</td></tr>")
    parts.append("</table></section>")
    return "".join(parts)
