"""Export tab: `tunesmith export` in a subprocess (merged safetensors, bitsandbytes 4/8-bit, or GGUF), its output
while it works, and the files it wrote. A hub push uses HF_TOKEN from the environment the UI was started in; there
is deliberately no token field, so a token can never end up in a form, a log or a screenshot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tunesmith.webui import views
from tunesmith.webui.commands import EXPORT_KINDS, GGUF_QUANTS, MERGED, export_args
from tunesmith.webui.context import EXPORT, BusyError, Context
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.runs import FINISHED, list_runs


@dataclass
class ExportTab:
    run: gr.Dropdown


def finished_runs(ctx: Context) -> list[str]:
    return [str(r.path) for r in list_runs(ctx.root) if r.status == FINISHED]


def file_table(folder: Path, lang: str):
    import pandas as pd

    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return pd.DataFrame([[str(p.relative_to(folder)), views.human_size(p.stat().st_size)] for p in files],
                        columns=[text(lang, "export.file"), text(lang, "export.size")])


def token_note(lang: str) -> str:
    return text(lang, "export.token_set" if os.environ.get("HF_TOKEN") else "export.token_missing")


def build(ctx: Context, L: Labels, lang: gr.Radio) -> ExportTab:
    with gr.Row():
        run = L.make(gr.Dropdown, label=Key("export.run"), choices=finished_runs(ctx), allow_custom_value=True,
                     value=None, scale=4)
        refresh = L.make(gr.Button, value=Key("common.refresh"), scale=1)
    with gr.Row():
        kind = L.make(gr.Radio, label=Key("export.kind"), value=MERGED,
                      choices=[(Key(f"export.kind_{k}"), k) for k in EXPORT_KINDS])
        quant = L.make(gr.Dropdown, label=Key("export.quant"), info=Key("export.quant_info"),
                       choices=list(GGUF_QUANTS), value="q8_0")
        shard = L.make(gr.Textbox, label=Key("export.shard"), info=Key("export.shard_info"), placeholder="5GB")
    with gr.Row():
        out_name = L.make(gr.Textbox, label=Key("export.out_name"), info=Key("export.out_name_info"))
        repo = L.make(gr.Textbox, label=Key("export.repo"), info=Key("export.repo_info"), placeholder="user/name")
        public = L.make(gr.Checkbox, label=Key("export.public"), value=False)
    token = gr.Markdown(token_note(L.lang))
    with gr.Row():
        start = L.make(gr.Button, value=Key("export.start"), variant="primary")
        stop = L.make(gr.Button, value=Key("common.stop"), variant="stop")
    status = gr.HTML()
    log_tail = L.make(gr.Textbox, label=Key("common.log"), lines=6, max_lines=12, interactive=False)
    files = L.make(gr.Dataframe, label=Key("export.files"), interactive=False)
    timer = gr.Timer(1.0, active=False)
    out_state = gr.State(None)

    def on_start(lang_value, run_dir, export_kind, quant_type, shard_size, out, repo_id, make_public):
        if not run_dir:
            return views.error(text(lang_value, "export.no_run")), gr.Timer(active=False), gr.skip()
        name = (out or "").strip() or f"{Path(run_dir).name}-{export_kind}"
        try:  # the export is written inside the workspace; the run is a model and may be anywhere
            target = ctx.workspace.within(ctx.export_dir, name, "export name")
            args = export_args(run_dir, str(target), export_kind, quant_type, shard_size or "", repo_id or "",
                               make_public)
            job = ctx.start(EXPORT, args)
        except BusyError:
            return views.error(text(lang_value, "export.busy")), gr.Timer(active=True), gr.skip()
        except Exception as e:
            return views.error(e), gr.Timer(active=False), gr.skip()
        return (views.message("info", text(lang_value, "common.running", command=job.command)),
                gr.Timer(active=True), str(target))

    def on_tick(lang_value, target):
        job = ctx.job(EXPORT)
        if job is None:
            return gr.update(), gr.update(), gr.update(), gr.Timer(active=False)
        if job.running:
            return gr.update(), job.tail(), gr.update(), gr.Timer(active=True)
        if not job.succeeded:
            reason = text(lang_value, "common.stopped") if job.stopped else job.error_line()
            return views.error(reason), job.tail(), gr.update(), gr.Timer(active=False)
        done = views.message("ok", text(lang_value, "export.done", out=target))
        return done, job.tail(), file_table(Path(target), lang_value), gr.Timer(active=False)

    def on_stop(lang_value):
        job = ctx.job(EXPORT)
        if job is not None:
            job.stop()
        return views.message("info", text(lang_value, "common.stopped"))

    def on_refresh(lang_value):
        return gr.update(choices=finished_runs(ctx)), token_note(lang_value)

    start.click(on_start, [lang, run, kind, quant, shard, out_name, repo, public], [status, timer, out_state],
                api_name="start_export")
    timer.tick(on_tick, [lang, out_state], [status, log_tail, files, timer])
    stop.click(on_stop, [lang], [status])
    refresh.click(on_refresh, [lang], [run, token])
    lang.change(lambda lang_value: token_note(lang_value), [lang], [token])
    return ExportTab(run)
