"""`tunesmith webui`: the Gradio page (Train / Evaluate / Chat / Export / Runs) and its launch.

Training, evaluation and export run as the CLI in subprocesses (jobs.py); chat loads models with the library
functions `tunesmith chat` uses. This package only builds configs and command lines and shows results.
Everything the page reads or writes stays in one workspace folder (workspace.py); reachable from other machines,
it asks for a login (security.py).
"""

from __future__ import annotations

import logging
import os

import gradio as gr

from tunesmith.webserver import WebServer, bind
from tunesmith.webui import ab_tab, chat_tab, eval_tab, export_tab, runs_tab, train_tab
from tunesmith.webui.context import TRAIN, Context
from tunesmith.webui.i18n import DEFAULT_LANGUAGE, LANGUAGE_CHOICES, Key, Labels, language_from_header, text
from tunesmith.webui.runs import loadable_models
from tunesmith.webui.security import Credentials, Gate, configured_credentials, generated_credentials, is_loopback
from tunesmith.webui.server import build_server_app

TAB_TRAIN, TAB_EVAL, TAB_CHAT, TAB_EXPORT, TAB_RUNS = "train", "eval", "chat", "export", "runs"


def build_app(ctx: Context, labels: Labels | None = None) -> gr.Blocks:
    """The page; `labels` collects every translated component (pass one in to inspect it)."""
    L = labels if labels is not None else Labels(DEFAULT_LANGUAGE)
    with gr.Blocks(title="tunesmith", analytics_enabled=False) as demo:  # no calls home: this may run offline
        with gr.Row():
            L.make(gr.Markdown, value=Key("app.title"), elem_id="ts-title")
            lang = gr.Radio(LANGUAGE_CHOICES, value=DEFAULT_LANGUAGE, label="Language / 언어", elem_id="ts-language",
                            scale=0, min_width=220)
        with gr.Tabs() as tabs:
            with L.make(gr.Tab, label=Key("tab.train"), id=TAB_TRAIN, elem_id="ts-tab-train"):
                train = train_tab.build(ctx, L, lang)
            with L.make(gr.Tab, label=Key("tab.eval"), id=TAB_EVAL, elem_id="ts-tab-eval") as eval_page:
                evaluate = eval_tab.build(ctx, L, lang)
                with L.make(gr.Accordion, label=Key("ab.title"), open=False):
                    L.make(gr.Markdown, value=Key("ab.intro"))
                    ab_tab.build(ctx, L, lang)
            with L.make(gr.Tab, label=Key("tab.chat"), id=TAB_CHAT, elem_id="ts-tab-chat") as chat_page:
                chat = chat_tab.build(ctx, L, lang)
            with L.make(gr.Tab, label=Key("tab.export"), id=TAB_EXPORT, elem_id="ts-tab-export") as export_page:
                export = export_tab.build(ctx, L, lang)
            with L.make(gr.Tab, label=Key("tab.runs"), id=TAB_RUNS, elem_id="ts-tab-runs") as runs_page:
                runs = runs_tab.build(ctx, L, lang)

        # Runs -> other tabs: put the run into the target's picker and switch to that tab.
        runs.to_chat.click(lambda path: (gr.update(value=path), gr.Tabs(selected=TAB_CHAT)),
                           [runs.selected], [chat.model, tabs])
        runs.to_eval.click(lambda path: (gr.update(value=["base", path] if path else ["base"]),
                                         gr.Tabs(selected=TAB_EVAL)), [runs.selected], [evaluate.models, tabs])
        runs.to_export.click(lambda path: (gr.update(value=path), gr.Tabs(selected=TAB_EXPORT)),
                             [runs.selected], [export.run, tabs])

        # Opening a tab refreshes its pickers, so a run that just finished is there to choose.
        def models():
            return gr.update(choices=loadable_models(ctx.root))

        chat_page.select(models, None, [chat.model])
        eval_page.select(models, None, [evaluate.models])
        export_page.select(lambda: gr.update(choices=export_tab.finished_runs(ctx)), None, [export.run])
        runs_page.select(runs.refresh_view, [lang, runs.selected], [runs.table, runs.selected])
        lang.change(L.updates, [lang], L.components)

        def on_page_load(request: gr.Request):
            """The browser's preferred language, a fresh run folder, and the live view of a run in progress."""
            header = request.headers.get("accept-language") if request is not None else None
            job = ctx.job(TRAIN)
            return language_from_header(header), train_tab.new_run_dir(ctx), gr.Timer(active=bool(job and job.running))

        demo.load(on_page_load, None, [lang, train.output_dir, train.timer])
        demo.load(train.refresh_plan, train.plan_inputs, [train.plan])  # what Start will do, before it is pressed
    return demo


def login_line(host: str, port: int, credentials: Credentials | None) -> str | None:
    """The start-up line that says how to get in: a warning when the page is reachable from other machines."""
    lang = DEFAULT_LANGUAGE
    if credentials is None:
        return None
    if credentials.generated:
        how = text(lang, "app.login_generated", user=credentials.user, password=credentials.password)
    else:
        how = text(lang, "app.login_configured", origin=credentials.origin)
    if is_loopback(host):
        return how
    return text(lang, "app.open_warning", address=f"{host}:{port}", port=port, how=how)


def launch(host: str = "127.0.0.1", port: int = 7860, workspace: str = "runs", auth_file: str | None = None) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up probes are not news
    credentials = configured_credentials(auth_file)  # a bad setting stops here, before anything starts
    if credentials is None and not is_loopback(host):
        credentials = generated_credentials()
    sock = bind(host, port, "webui")
    ctx = Context(workspace)
    ctx.workspace.prepare()
    os.environ["GRADIO_TEMP_DIR"] = str(ctx.workspace.upload_cache_dir)  # uploads arrive inside the workspace too
    demo = build_app(ctx)
    gate = Gate(credentials, port, loopback_only=is_loopback(host) and credentials is None)
    app = build_server_app(demo, gate, allowed_paths=[ctx.root], blocked_paths=ctx.workspace.private_dirs)
    server = WebServer(app, sock, "webui")
    print(text(DEFAULT_LANGUAGE, "app.listening", url=f"http://{host}:{port}"), flush=True)
    print(text(DEFAULT_LANGUAGE, "app.workspace", root=ctx.root), flush=True)
    line = login_line(host, port, credentials)
    if line:
        print(line, flush=True)
    try:
        server.wait()  # until Ctrl-C
    finally:
        ctx.stop_all()  # a run started from the page does not outlive it
        server.stop()
