"""Runs tab: the runs under the output root with status, steps and final losses, a run's loss plot, and buttons
that open it in the Chat, Evaluate or Export tab."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from tunesmith.webui.context import Context
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.runs import list_runs


@dataclass
class RunsTab:
    table: gr.Dataframe
    selected: gr.Dropdown
    refresh_view: Callable  # (lang, selected run) -> (table, picker)
    to_chat: gr.Button
    to_eval: gr.Button
    to_export: gr.Button


def runs_frame(ctx: Context, lang: str):
    import pandas as pd

    def loss(value):
        return "-" if value is None else f"{value:.4f}"

    rows = [[r.name, text(lang, f"runs.status_{r.status}"), f"{r.progress.step}/{r.progress.max_steps or '?'}",
             loss(r.progress.last_loss), loss(r.progress.last_eval_loss), str(r.path)]
            for r in list_runs(ctx.root, ctx.running_dirs())]
    columns = [text(lang, key) for key in ("runs.name", "runs.status", "runs.steps", "runs.train_loss",
                                             "runs.eval_loss", "runs.path")]
    return pd.DataFrame(rows, columns=columns)


def build(ctx: Context, L: Labels, lang: gr.Radio) -> RunsTab:
    refresh = L.make(gr.Button, value=Key("common.refresh"))
    table = L.make(gr.Dataframe, value=runs_frame(ctx, L.lang), label=Key("runs.table"), interactive=False,
                   elem_id="ts-runs-table")
    with gr.Row():
        selected = L.make(gr.Dropdown, label=Key("runs.selected"), allow_custom_value=True, value=None,
                          choices=[str(r.path) for r in list_runs(ctx.root)], scale=3)
        to_chat = L.make(gr.Button, value=Key("runs.open_chat"), scale=1)
        to_eval = L.make(gr.Button, value=Key("runs.open_eval"), scale=1)
        to_export = L.make(gr.Button, value=Key("runs.open_export"), scale=1)
    plot = L.make(gr.Image, label=Key("runs.plot"), type="filepath", interactive=False, height=360)

    def on_refresh(lang_value, current):
        """The table again; the picker keeps its run, or shows the newest one so its plot is on screen."""
        paths = [str(r.path) for r in list_runs(ctx.root)]
        keep = current if current else (paths[0] if paths else None)
        return runs_frame(ctx, lang_value), gr.update(choices=paths, value=keep)

    def on_select(path):
        runs = {str(r.path): r for r in list_runs(ctx.root)}
        run = runs.get(path)
        return str(run.plot) if run is not None and run.plot is not None else None

    def on_row(evt: gr.SelectData):
        row = evt.row_value if evt is not None else None
        return row[-1] if row else gr.update()

    refresh.click(on_refresh, [lang, selected], [table, selected])
    selected.change(on_select, [selected], [plot])
    table.select(on_row, None, [selected])
    return RunsTab(table, selected, on_refresh, to_chat, to_eval, to_export)
