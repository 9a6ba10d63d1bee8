"""report.html holds its sections (loss curves, metrics before vs after, A/B result, answers side by side) and stays
self-contained; the curves come from a run's trainer_log.jsonl."""

import json
import re

from tunesmith.evaluate.curves import training_curves
from tunesmith.evaluate.report import render_report
from tunesmith.evaluate.report_svg import line_chart, nice_ticks


def results() -> dict:
    pair = {"index": 0, "prompt": "고객센터 운영 시간?", "answers": {"base": "모르겠어요", "ft": "매일 오전 8시부터 오후 9시까지"},
            "shown": {"A": "ft", "B": "base"}, "outcome": "win", "inconsistent": False,
            "judgments": [{"A": "ft", "B": "base", "reply": "[[A]]", "verdict": "A", "preferred": "ft"},
                          {"A": "base", "B": "ft", "reply": "Answer: B", "verdict": "B", "preferred": "ft"}]}
    bad = {**pair, "index": 1, "prompt": "<b>escaped?</b>", "outcome": "invalid",
           "judgments": [{"A": "base", "B": "ft", "reply": "hmm", "verdict": None, "preferred": None},
                         {"A": "ft", "B": "base", "reply": "[[A]]", "verdict": "A", "preferred": "ft"}]}
    return {
        "models": [{"label": "base", "spec": "base"}, {"label": "ft", "spec": "runs/ft"}], "dataset": "faq.jsonl",
        "benchmarks": [], "samples": {},
        "metrics": {"base": {"eval_loss": 2.5, "perplexity": 12.18, "mc/accuracy": 0.4},
                    "ft": {"eval_loss": 1.25, "perplexity": 3.49, "mc/accuracy": 0.65}},
        "training": {"ft": {"run": "runs/ft", "train": [[1, 3.0], [2, 2.4], [3, 2.0]], "eval": [[0, 3.1], [3, 2.2]],
                            "checkpoint_step": None}},
        "ab": {"prompts_file": "prompts.jsonl", "judge": {"kind": "endpoint", "name": "judge at port 8000"},
               "model_1": "base", "model_2": "ft", "n_prompts": 2, "wins": 1, "ties": 0, "losses": 0, "judged": 1,
               "invalid": 1, "invalid_replies": 1, "inconsistent": 0, "skipped": 0, "not_judged": 0,
               "win_rate": 1.0, "ci95": [0.2065, 1.0], "ci_method": "Wilson", "pairs": [pair, bad]},
    }


def test_report_holds_its_sections():
    html = render_report(results())
    sections = re.findall(r"<section id='([\w-]+)'>", html)
    assert sections == ["models", "curves", "metrics", "ab", "ab-samples"]  # no exact benchmark: the A/B answers
    curves = html[html.index("id='curves'"):html.index("id='metrics'")]
    assert curves.count("<polyline") == 2 and "train loss" in curves and "eval loss" in curves
    metrics = html[html.index("id='metrics'"):html.index("id='ab'")]
    assert "Metrics: before vs after" in metrics and "change ft vs base" in metrics
    assert "<td class='num better'>-1.2500</td>" in metrics  # lower loss is better
    assert "<td class='num better'>+25.0 pts</td>" in metrics
    ab = html[html.index("id='ab'"):html.index("id='ab-samples'")]
    assert "Blind A/B: ft (model 2) vs base (model 1)" in ab and "judge at port 8000" in ab
    assert "<b>100.0%</b>" in ab and "95% CI 20.6% - 100.0%" in ab and "1 (1 unparseable judge replies" in ab
    side = html[html.index("id='ab-samples'"):]
    assert "매일 오전 8시부터 오후 9시까지" in side and "모르겠어요" in side and "unparseable" in side
    assert "&lt;b&gt;escaped?&lt;/b&gt;" in side and "<b>escaped?</b>" not in side
    for outside in ("<script", "<link", "<img", "src=", "url(", "http"):
        assert outside not in html, outside


def test_without_a_run_or_an_ab_there_is_no_empty_section():
    plain = results()
    del plain["training"], plain["ab"]
    html = render_report(plain)
    assert "id='curves'" not in html and "id='ab'" not in html and "id='ab-samples'" not in html
    assert "No exact-answer benchmark was given." in html
    plain["metrics"] = {"base": {}, "ft": {}}
    assert "No dataset or benchmark was given" in render_report(plain)


def test_curves_come_from_the_run_log_and_a_checkpoint_points_into_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-4").mkdir(parents=True)
    (run / "checkpoints" / "step-4" / "trainer_state.json").write_text("{}")  # what makes a folder a checkpoint
    records = [{"step": 0, "max_steps": 8, "eval_loss": 3.0}, {"step": 2, "loss": 2.9, "lr": 1e-3},
               {"step": 4, "loss": 2.5}, {"step": 4, "eval_loss": 2.6}, {"step": 4, "warning": "..."},
               {"step": 8, "done": True}]
    (run / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 6, "lo')
    curves = training_curves(str(run))
    assert curves == {"run": str(run), "train": [[2, 2.9], [4, 2.5]], "eval": [[0, 3.0], [4, 2.6]],
                      "checkpoint_step": None}
    assert training_curves(str(run / "checkpoints" / "step-4"))["checkpoint_step"] == 4
    assert training_curves("base") is None and training_curves(str(tmp_path)) is None


def test_chart_axes_use_round_ticks():
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(2.13, 2.97) == [2.0, 2.2, 2.4, 2.6, 2.8, 3.0]
    assert nice_ticks(5, 5)[0] == 5 and nice_ticks(5, 5)[-1] == 10  # one point still gets an axis
    svg = line_chart([{"name": "eval loss", "color": "#d62728", "points": [[0, 3.0], [4, 2.6]], "dots": True}],
                     marker_x=4)
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and "stroke-dasharray" in svg
    assert line_chart([{"name": "x", "color": "#000", "points": []}]) == ""


def test_the_report_and_the_table_say_which_scoring_each_accuracy_used():
    from tunesmith.evaluate.table import format_table

    scored = results()
    del scored["training"], scored["ab"]
    scored["benchmarks"] = [{"name": "mc", "path": "mc.jsonl", "kind": "mc", "n": 20, "few_shot": 0},
                            {"name": "qa", "path": "qa.jsonl", "kind": "exact", "n": 2, "few_shot": 0}]
    scored["samples"] = {"qa": []}
    scored["metrics"] = {"base": {"mc/accuracy": 0.4, "mc/accuracy_norm": 0.5, "qa/accuracy": 0.0, "qa/bleu": 1.0},
                         "ft": {"mc/accuracy": 0.65, "mc/accuracy_norm": 0.6, "qa/accuracy": 0.5, "qa/bleu": 9.0}}
    html = render_report(scored)
    metrics = html[html.index("id='metrics'"):html.index("id='samples'")]
    summed = metrics[metrics.index("<td>mc/accuracy<"):metrics.index("<td>mc/accuracy_norm")]
    per_char = metrics[metrics.index("<td>mc/accuracy_norm"):metrics.index("<td>qa/accuracy")]
    assert "summed log-likelihood" in summed and "per character" not in summed
    assert "per character" in per_char and "summed" not in per_char
    assert "<td class='num better'>+10.0 pts</td>" in per_char  # accuracy_norm is a percentage too
    assert "last marker" in metrics[metrics.index("<td>qa/accuracy"):]
    table = format_table(scored)
    assert "mc/accuracy_norm  50.0%  60.0%" in table.splitlines()
    notes = [line for line in table.splitlines() if line.startswith("* ")]
    assert [n.split(":")[0] for n in notes] == ["* mc/accuracy", "* mc/accuracy_norm", "* qa/accuracy"]
    assert "summed log-likelihood" in notes[0] and "per character" in notes[1]
