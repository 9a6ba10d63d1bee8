"""Train tab: model, method, stage, template, dataset (+ preview), hyper-parameters, the command preview, and a run
started as `python -m tunesmith train CONFIG.yaml` whose trainer_log.jsonl feeds the progress bar and loss chart."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tunesmith.webui import views
from tunesmith.webui.context import TRAIN, BusyError, Context, stamp
from tunesmith.webui.form import ADVANCED_FIELDS, MAIN_FIELDS, build_config, command_line, config_values, overrides
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.preview import preview_html, preview_rows
from tunesmith.webui.progress import loss_frame, progress_html, read_log
from tunesmith.webui.runs import data_files
from tunesmith.webui.train_form import WIDGET_FIELDS, field_widget, form_values, model_widgets, widget_values

DATA_SUFFIXES = [".json", ".jsonl", ".csv", ".parquet", ".txt"]
EXAMPLE_DATA = "examples/data"


@dataclass
class TrainTab:
    output_dir: gr.Textbox
    timer: gr.Timer


def new_run_dir(ctx: Context) -> str:
    """A fresh run folder name; each page load gets one, so a second run never lands on the first by accident."""
    return str(ctx.root / f"run-{stamp()}")


def build(ctx: Context, L: Labels, lang: gr.Radio) -> TrainTab:
    base = gr.State({"path": None, "values": None})  # a loaded config file: the command starts from it
    widgets: dict = {}
    with gr.Row():
        model_source, model_location = model_widgets(L)
    with gr.Row():
        for name in ("method", "stage", "template"):
            widgets[name] = field_widget(L, name)
    with gr.Row():
        widgets["dataset"] = L.make(gr.Dropdown, label=Key("field.dataset"), info=Key("help.dataset"), value=None,
                                    choices=data_files(EXAMPLE_DATA, ctx.uploads_dir), allow_custom_value=True,
                                    scale=4, elem_id="ts-field-dataset")
        upload = L.make(gr.File, label=Key("train.upload"), file_types=DATA_SUFFIXES, scale=2, height=120)
        with gr.Column(scale=1, min_width=160):
            preview_count = L.make(gr.Number, value=3, precision=0, minimum=1, maximum=20,
                                   label=Key("train.preview_rows"))
            preview_button = L.make(gr.Button, value=Key("train.preview_data"), elem_id="ts-preview-data")
    data_preview = gr.HTML(elem_id="ts-data-preview")
    with gr.Row(equal_height=True):
        for name in MAIN_FIELDS:
            widgets[name] = field_widget(L, name, value=str(ctx.root / "run") if name == "output_dir" else None,
                                         min_width=200)
    with L.make(gr.Accordion, label=Key("train.advanced"), open=False):
        with gr.Row():
            for name in ADVANCED_FIELDS:
                widgets[name] = field_widget(L, name, min_width=240)
    form = [model_source, model_location, *(widgets[name] for name in WIDGET_FIELDS)]

    with gr.Row():
        command_button = L.make(gr.Button, value=Key("train.preview_command"), elem_id="ts-preview-command")
        start_button = L.make(gr.Button, value=Key("train.start"), variant="primary", elem_id="ts-start")
        stop_button = L.make(gr.Button, value=Key("train.stop"), variant="stop", elem_id="ts-stop")
    command = L.make(gr.Textbox, label=Key("train.command"), interactive=False, buttons=["copy"],
                     elem_id="ts-command")
    status = gr.HTML(elem_id="ts-train-status")
    progress = gr.HTML(elem_id="ts-progress")
    # starts as None, not an empty frame: Gradio's chart given an empty frame first draws later lines uncoloured
    chart = L.make(gr.LinePlot, value=None, x="step", y="loss", color="series", label=Key("train.chart"),
                   x_title=Key("train.axis_step"), y_title=Key("train.axis_loss"), color_title=Key("train.axis_series"),
                   elem_id="ts-loss-chart", height=300)
    with L.make(gr.Accordion, label=Key("train.config_file"), open=False):
        with gr.Row():
            config_path = L.make(gr.Textbox, label=Key("train.config_path"), scale=3,
                                 value=str(ctx.configs_dir / "my-config.yaml"))
            save_button = L.make(gr.Button, value=Key("train.save_config"), scale=1)
            load_button = L.make(gr.Button, value=Key("train.load_config"), scale=1)
        config_upload = L.make(gr.File, label=Key("train.upload_config"), file_types=[".yaml", ".yml"], height=100,
                               elem_id="ts-config-upload")
    timer = gr.Timer(1.0, active=False)

    def current_config(base_state, values):
        extra = overrides(values, base_state["values"])
        return build_config(base_state["path"], extra), command_line(base_state["path"], extra)

    def on_command(lang_value, base_state, *form_raw):
        try:
            _, line = current_config(base_state, form_values(*form_raw))
        except Exception as e:
            return "", views.error(e)
        return line, views.message("ok", text(lang_value, "train.command_ok"))

    def on_start(lang_value, base_state, *form_raw):
        try:
            cfg, line = current_config(base_state, form_values(*form_raw))
            ctx.configs_dir.mkdir(parents=True, exist_ok=True)
            config_file = ctx.configs_dir / f"{Path(cfg.output_dir).name}-{stamp()}.yaml"
            cfg.save(config_file)
            job = ctx.start(TRAIN, ["train", str(config_file)])
        except BusyError:
            return gr.update(), views.error(text(lang_value, "train.busy")), gr.Timer(active=True)
        except Exception as e:
            return gr.update(), views.error(e), gr.Timer(active=False)
        ctx.train_dir = Path(cfg.output_dir)
        started = text(lang_value, "train.started", command=job.command, output_dir=cfg.output_dir)
        return line, views.message("info", started), gr.Timer(active=True)

    def on_tick(lang_value):
        job = ctx.job(TRAIN)
        if job is None or ctx.train_dir is None:
            return gr.update(), gr.update(), gr.update(), gr.Timer(active=False)
        p = read_log(ctx.train_dir, newer_than=job.started)
        if job.running:
            state, note = "train.state_running", gr.update()
        elif job.stopped:
            state, note = "train.state_stopped", views.message("info", text(lang_value, "train.stopped"))
        elif job.succeeded:
            state = "train.state_done"
            note = views.message("ok", text(lang_value, "train.done", output_dir=str(ctx.train_dir)))
        else:
            state = "train.state_failed"
            note = views.error(text(lang_value, "train.failed", error=job.error_line()))
        frame = loss_frame(p, lang_value) if p.train or p.evals else None
        return progress_html(p, lang_value, state), frame, note, gr.Timer(active=job.running)

    def on_stop(lang_value):
        job = ctx.job(TRAIN)
        if job is None or not job.running:
            return views.message("info", text(lang_value, "train.nothing_running"))
        job.stop()
        return views.message("info", text(lang_value, "train.stopped"))

    def on_preview(lang_value, base_state, count, *form_raw):
        from tunesmith.data.templates import get_template

        try:
            cfg, _ = current_config(base_state, form_values(*form_raw))
            tokenizer = ctx.tokenizer(cfg.model)
            rows = preview_rows(cfg, tokenizer, get_template(cfg.template, tokenizer), int(count or 3))
        except Exception as e:
            return views.error(e)
        return preview_html(rows, lang_value)

    def on_upload(lang_value, file_path):
        if not file_path:
            return gr.update(), gr.update()
        ctx.uploads_dir.mkdir(parents=True, exist_ok=True)
        target = ctx.uploads_dir / Path(file_path).name
        shutil.copyfile(file_path, target)
        choices = data_files(EXAMPLE_DATA, ctx.uploads_dir)
        return (gr.update(choices=choices, value=str(target)),
                views.message("ok", text(lang_value, "train.uploaded", path=str(target))))

    def on_save(lang_value, base_state, path, *form_raw):
        try:
            cfg, _ = current_config(base_state, form_values(*form_raw))
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            cfg.save(path)
        except Exception as e:
            return views.error(e)
        return views.message("ok", text(lang_value, "train.saved", path=path))

    def on_load(lang_value, path):
        try:
            values = config_values(path)
        except Exception as e:
            return [gr.skip()] * (len(form) + 1) + [views.error(e)]
        note = views.message("ok", text(lang_value, "train.loaded", path=path))
        return [{"path": path, "values": values}, *widget_values(values), note]

    def on_config_upload(lang_value, file_path):
        if not file_path:
            return [gr.skip()] * (len(form) + 3)
        ctx.configs_dir.mkdir(parents=True, exist_ok=True)
        target = ctx.configs_dir / Path(file_path).name
        shutil.copyfile(file_path, target)
        return [str(target), *on_load(lang_value, str(target))]

    command_button.click(on_command, [lang, base, *form], [command, status])
    start_button.click(on_start, [lang, base, *form], [command, status, timer])
    stop_button.click(on_stop, [lang], [status])
    timer.tick(on_tick, [lang], [progress, chart, status, timer])
    preview_button.click(on_preview, [lang, base, preview_count, *form], [data_preview])
    upload.upload(on_upload, [lang, upload], [widgets["dataset"], status])
    save_button.click(on_save, [lang, base, config_path, *form], [status])
    load_button.click(on_load, [lang, config_path], [base, *form, status])
    config_upload.upload(on_config_upload, [lang, config_upload], [config_path, base, *form, status])
    return TrainTab(widgets["output_dir"], timer)
