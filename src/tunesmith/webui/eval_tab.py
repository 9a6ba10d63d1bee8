"""Evaluate tab: `tunesmith eval` on chosen models and benchmarks in a subprocess; the results table and a link
to its report.html. The human blind A/B section lives in ab_tab.py."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tunesmith.webui import views
from tunesmith.webui.commands import eval_args
from tunesmith.webui.context import EVAL, BusyError, Context, stamp
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.runs import data_files, loadable_models


@dataclass
class EvalTab:
    models: gr.Dropdown


def results_table(results: dict, lang: str):
    """eval_results.json as a table: one row per metric, one column per model (the CLI's own formatting)."""
    import pandas as pd

    from tunesmith.evaluate.runner import format_value, metric_rows

    labels = list(results["metrics"])
    rows = [[name, *(format_value(name, results["metrics"][label].get(name)) for label in labels)]
            for name in metric_rows(results)]
    return pd.DataFrame(rows, columns=[text(lang, "eval.metric"), *labels])


def report_link(report: Path, lang: str) -> str:
    url = f"/gradio_api/file={html.escape(str(report.resolve()))}"
    return f'<a href="{url}" target="_blank" id="ts-report-link">{html.escape(text(lang, "eval.open_report"))}</a>'


def build(ctx: Context, L: Labels, lang: gr.Radio) -> EvalTab:
    with gr.Row():
        models = L.make(gr.Dropdown, label=Key("eval.models"), info=Key("eval.models_info"), multiselect=True,
                        allow_custom_value=True, choices=loadable_models(ctx.root), value=["base"], scale=4)
        refresh = L.make(gr.Button, value=Key("common.refresh"), scale=1)
    with gr.Row():
        benchmarks = L.make(gr.Dropdown, label=Key("eval.benchmarks"), info=Key("eval.benchmarks_info"),
                            multiselect=True, allow_custom_value=True,
                            choices=data_files(ctx.workspace.examples_dir / "benchmarks", ctx.uploads_dir))
        dataset = L.make(gr.Dropdown, label=Key("eval.dataset"), info=Key("eval.dataset_info"), value=None,
                         allow_custom_value=True, choices=data_files(ctx.workspace.examples_dir / "data",
                                                                     ctx.uploads_dir))
    with gr.Row():
        max_samples = L.make(gr.Number, value=0, precision=0, minimum=0, label=Key("eval.max_samples"),
                             info=Key("eval.max_samples_info"))
        few_shot = L.make(gr.Number, value=0, precision=0, minimum=0, label=Key("eval.few_shot"),
                          info=Key("eval.few_shot_info"))
        out_name = L.make(gr.Textbox, value=f"eval-{stamp()}", label=Key("eval.out_name"),
                          info=Key("eval.out_name_info"))
    with gr.Row():
        run = L.make(gr.Button, value=Key("eval.run"), variant="primary")
        stop = L.make(gr.Button, value=Key("common.stop"), variant="stop")
    status = gr.HTML()
    log_tail = L.make(gr.Textbox, label=Key("common.log"), lines=6, max_lines=12, interactive=False)
    table = L.make(gr.Dataframe, label=Key("eval.results"), interactive=False)
    link = gr.HTML()
    timer = gr.Timer(1.0, active=False)
    out_state = gr.State(None)

    def on_run(lang_value, chosen, benches, data, samples, shots, name):
        if not chosen:
            return views.error(text(lang_value, "eval.no_models")), gr.Timer(active=False), None
        try:  # files to read and the result folder, all inside the workspace (models may be anywhere)
            out = ctx.workspace.within(ctx.eval_dir, (name or "").strip() or f"eval-{stamp()}", "result name")
            benches = [ctx.workspace.data_source(b, "benchmark") for b in benches or []]
            data = ctx.workspace.data_source(data, "dataset") if data else None
            args = eval_args(list(chosen), benches, data, str(out), int(samples or 0), int(shots or 0))
            job = ctx.start(EVAL, args)
        except BusyError:
            return views.error(text(lang_value, "eval.busy")), gr.Timer(active=True), gr.skip()
        except Exception as e:
            return views.error(e), gr.Timer(active=False), gr.skip()
        return views.message("info", text(lang_value, "common.running", command=job.command)), \
            gr.Timer(active=True), str(out)

    def on_tick(lang_value, out):
        job = ctx.job(EVAL)
        if job is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.Timer(active=False)
        if job.running:
            return gr.update(), job.tail(), gr.update(), gr.update(), gr.Timer(active=True)
        if not job.succeeded:
            reason = text(lang_value, "common.stopped") if job.stopped else job.error_line()
            return views.error(reason), job.tail(), gr.update(), gr.update(), gr.Timer(active=False)
        try:
            results = json.loads((Path(out) / "eval_results.json").read_text(encoding="utf-8"))
            frame = results_table(results, lang_value)
        except Exception as e:
            return views.error(e), job.tail(), gr.update(), gr.update(), gr.Timer(active=False)
        done = views.message("ok", text(lang_value, "eval.done", out=out))
        return done, job.tail(), frame, report_link(Path(out) / "report.html", lang_value), gr.Timer(active=False)

    def on_stop(lang_value):
        job = ctx.job(EVAL)
        if job is not None:
            job.stop()
        return views.message("info", text(lang_value, "common.stopped"))

    def on_refresh():
        return gr.update(choices=loadable_models(ctx.root))

    run.click(on_run, [lang, models, benchmarks, dataset, max_samples, few_shot, out_name], [status, timer, out_state],
              api_name="start_eval")
    timer.tick(on_tick, [lang, out_state], [status, log_tail, table, link, timer])
    stop.click(on_stop, [lang], [status])
    refresh.click(on_refresh, None, [models])
    return EvalTab(models)
