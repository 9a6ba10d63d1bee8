"""Train tab: model, method, stage, template, dataset (+ preview), hyper-parameters, what Start will do (rows, steps,
time), the command preview, and a run started as `python -m tunesmith train CONFIG.yaml` whose trainer_log.jsonl
feeds the progress bar and loss chart.

The form opens on the quickstart (examples/quickstart.yaml and its data, copied into the workspace), so Start
trains it as it is. Every path in a config is confined to the workspace before anything reads or writes it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tunesmith.data.readers import COMPRESSIONS, FILE_SUFFIXES
from tunesmith.errors import TunesmithError
from tunesmith.webui import views
from tunesmith.webui.context import TRAIN, BusyError, Context, stamp
from tunesmith.webui.form import ADVANCED_FIELDS, MAIN_FIELDS, build_config, command_line, config_values, overrides
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.plan import plan_html, plan_run
from tunesmith.webui.preview import preview_html, preview_rows
from tunesmith.webui.progress import loss_frame, progress_html, read_log
from tunesmith.webui.runs import data_files
from tunesmith.webui.train_form import WIDGET_FIELDS, field_widget, form_values, model_widgets, widget_values

DATA_SUFFIXES = [*FILE_SUFFIXES, *COMPRESSIONS]  # what the data reader reads
# Keys that change what Start will do (rows, steps, time): a change redraws the plan.
PLAN_FIELDS = ("method", "stage", "dataset", "val_dataset", "val_size", "max_samples", "max_steps", "num_epochs",
               "per_device_batch_size", "gradient_accumulation_steps", "eval_steps")


@dataclass
class TrainTab:
    output_dir: gr.Textbox
    timer: gr.Timer
    plan: gr.HTML
    plan_inputs: list
    refresh_plan: Callable  # (lang, base state, *form) -> the plan's HTML


def new_run_dir(ctx: Context) -> str:
    """A fresh run folder name; each page load gets one, so a second run never lands on the first by accident."""
    return str(ctx.root / f"run-{stamp()}")


def data_choices(ctx: Context) -> list[str]:
    return data_files(ctx.workspace.examples_dir / "data", ctx.uploads_dir)


def quickstart(ctx: Context) -> tuple[str | None, dict | None, dict]:
    """(config file, its values, the form's first values): the quickstart's, with its paths in the workspace;
    without it (no examples/ where tunesmith runs from), the config defaults and no dataset."""
    path = ctx.workspace.quickstart
    if path is None:
        return None, None, {}
    try:
        values = config_values(path)
        return str(path), values, ctx.workspace.confine_train_values(values)
    except TunesmithError:  # an edited copy that no longer loads: the page still opens, on the defaults
        return None, None, {}


def build(ctx: Context, L: Labels, lang: gr.Radio) -> TrainTab:
    start_path, start_values, shown = quickstart(ctx)
    base = gr.State({"path": start_path, "values": start_values})  # a loaded config file: the command starts from it
    widgets: dict = {}
    with gr.Row():
        model_source, model_location = model_widgets(L)
    with gr.Row():
        for name in ("method", "stage", "template"):
            widgets[name] = field_widget(L, name, value=shown.get(name))
    with gr.Row():
        widgets["dataset"] = L.make(gr.Dropdown, label=Key("field.dataset"), info=Key("help.dataset"),
                                    value=shown.get("dataset"), choices=data_choices(ctx), allow_custom_value=True,
                                    scale=4, elem_id="ts-field-dataset")
        upload = L.make(gr.File, label=Key("train.upload"), file_types=DATA_SUFFIXES, scale=2, height=120)
        with gr.Column(scale=1, min_width=160):
            preview_count = L.make(gr.Number, value=3, precision=0, minimum=1, maximum=20,
                                   label=Key("train.preview_rows"))
            preview_button = L.make(gr.Button, value=Key("train.preview_data"), elem_id="ts-preview-data")
    data_preview = gr.HTML(elem_id="ts-data-preview")
    with gr.Row(equal_height=True):
        for name in MAIN_FIELDS:
            first = str(ctx.root / "run") if name == "output_dir" else shown.get(name)  # page load: a fresh run
            widgets[name] = field_widget(L, name, value=first, min_width=200)
    with L.make(gr.Accordion, label=Key("train.advanced"), open=False):
        with gr.Row():
            for name in ADVANCED_FIELDS:
                widgets[name] = field_widget(L, name, value=shown.get(name), min_width=240)
    form = [model_source, model_location, *(widgets[name] for name in WIDGET_FIELDS)]
    plan = gr.HTML(elem_id="ts-plan")

    with gr.Row():
        check_button = L.make(gr.Button, value=Key("train.check"), elem_id="ts-check")
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
        """The config Start runs and its command; every path in it inside the workspace (else one line)."""
        values = ctx.workspace.confine_train_values(values)
        base_path = str(ctx.workspace.config_file(base_state["path"])) if base_state["path"] else None
        extra = overrides(values, base_state["values"])
        cfg = ctx.workspace.confine_config(build_config(base_path, extra))
        return cfg, command_line(base_path, extra)

    def on_plan(lang_value, base_state, *form_raw):
        try:
            cfg, _ = current_config(base_state, form_values(*form_raw))
            return plan_html(plan_run(cfg, ctx.root), lang_value)
        except Exception as e:  # the form is mid-edit: say why there is no plan yet, in one line
            return views.message("info", text(lang_value, "plan.not_yet", reason=views.one_line(e)))

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

    def on_check(lang_value, base_state, *form_raw):
        """`tunesmith doctor` on the form's config: the same report, as HTML under the data preview."""
        from tunesmith.doctor import doctor, to_fragment

        try:
            cfg, _ = current_config(base_state, form_values(*form_raw))
            return to_fragment(doctor(cfg))
        except Exception as e:
            return views.error(e)

    def on_upload(lang_value, file_path):
        """Gradio has the file in its upload folder (it refuses paths it did not receive); keep a copy to train on."""
        if not file_path:
            return gr.update(), gr.update()
        try:
            target = ctx.workspace.within(ctx.uploads_dir, Path(file_path).name, "uploaded file")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file_path, target)
        except Exception as e:
            return gr.update(), views.error(e)
        return (gr.update(choices=data_choices(ctx), value=str(target)),
                views.message("ok", text(lang_value, "train.uploaded", path=str(target))))

    def on_save(lang_value, base_state, path, *form_raw):
        try:
            target = ctx.workspace.config_file(path)
            cfg, _ = current_config(base_state, form_values(*form_raw))
            target.parent.mkdir(parents=True, exist_ok=True)
            cfg.save(target)
        except Exception as e:
            return views.error(e)
        return views.message("ok", text(lang_value, "train.saved", path=str(target)))

    def on_load(lang_value, path):
        try:
            target = ctx.workspace.config_file(path)
            values = config_values(target)
        except Exception as e:
            return [gr.skip()] * (len(form) + 1) + [views.error(e)]
        note = views.message("ok", text(lang_value, "train.loaded", path=str(target)))
        return [{"path": str(target), "values": values}, *widget_values(values), note]

    def on_config_upload(lang_value, file_path):
        if not file_path:
            return [gr.skip()] * (len(form) + 3)
        try:
            target = ctx.workspace.config_file(str(ctx.workspace.within(ctx.configs_dir, Path(file_path).name,
                                                                         "config file")))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file_path, target)
        except Exception as e:
            return [gr.skip()] * (len(form) + 2) + [views.error(e)]
        return [str(target), *on_load(lang_value, str(target))]

    command_button.click(on_command, [lang, base, *form], [command, status], api_name="preview_command")
    start_button.click(on_start, [lang, base, *form], [command, status, timer], api_name="start_training")
    stop_button.click(on_stop, [lang], [status], api_name="stop_training")
    timer.tick(on_tick, [lang], [progress, chart, status, timer])
    check_button.click(on_check, [lang, base, *form], [data_preview], api_name="check_config")
    preview_button.click(on_preview, [lang, base, preview_count, *form], [data_preview], api_name="preview_data")
    upload.upload(on_upload, [lang, upload], [widgets["dataset"], status], api_name="upload_data")
    save_button.click(on_save, [lang, base, config_path, *form], [status], api_name="save_config")
    load_button.click(on_load, [lang, config_path], [base, *form, status], api_name="load_config")
    config_upload.upload(on_config_upload, [lang, config_upload], [config_path, base, *form, status],
                         api_name="upload_config")
    plan_inputs = [lang, base, *form]
    plan_triggers = [lang.change, model_source.change, model_location.change,
                     *(widgets[name].change for name in PLAN_FIELDS)]
    gr.on(plan_triggers, on_plan, plan_inputs, [plan], trigger_mode="always_last", show_progress="hidden",
          api_name="plan_run")
    return TrainTab(widgets["output_dir"], timer, plan, plan_inputs, on_plan)
