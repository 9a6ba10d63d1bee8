"""The Evaluate tab's human blind A/B section: two models answer the same prompts, the person picks the better
answer of each pair (A and B shuffled per pair), and the models' names are revealed at the end."""

from __future__ import annotations

import html
import time

import gradio as gr

from tunesmith.webui import blind_ab, views
from tunesmith.webui.context import Context
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.runs import data_files, loadable_models

ANSWER_BOX = '<div class="ts-ab-answer">{}</div>'


def pair_view(state, lang: str) -> tuple[str, str, str, str]:
    """(progress line, prompt, answer A, answer B) for the next unjudged pair; empty when none is left."""
    pair = blind_ab.current(state) if state else None
    if pair is None:
        return "", "", "", ""
    prompt, answer_a, answer_b = pair
    step = text(lang, "ab.progress", done=len(state["verdicts"]) + 1, total=len(state["prompts"]))
    return (step, html.escape(prompt), ANSWER_BOX.format(html.escape(answer_a)),
            ANSWER_BOX.format(html.escape(answer_b)))


def reveal_markdown(state, lang: str) -> str:
    one, two = state["labels"]
    r = blind_ab.result(state)
    lines = [f"### {text(lang, 'ab.reveal_title')}", "",
             text(lang, "ab.summary", two=two, one=one, wins=r["wins"], ties=r["ties"], losses=r["losses"]), ""]
    if r["win_rate"] is not None:
        lo, hi = r["ci95"]
        lines += [text(lang, "ab.win_rate", two=two, rate=f"{100 * r['win_rate']:.0f}", low=f"{100 * lo:.0f}",
                       high=f"{100 * hi:.0f}"), ""]
    for i, prompt in enumerate(state["prompts"][:len(state["verdicts"])]):
        a = state["shown_as_a"][i]
        winner = blind_ab.preferred(state, i)
        shown = text(lang, "ab.tie") if winner == 0 else state["labels"][winner - 1]
        lines.append(text(lang, "ab.reveal_row", n=i + 1, prompt=prompt, a=state["labels"][a - 1],
                          b=state["labels"][2 - a], winner=shown))
    return "\n".join(lines)


def build(ctx: Context, L: Labels, lang: gr.Radio) -> None:
    choices = loadable_models(ctx.root)
    with gr.Row():
        model_1 = L.make(gr.Dropdown, label=Key("ab.model_1"), choices=choices, value="base", allow_custom_value=True)
        model_2 = L.make(gr.Dropdown, label=Key("ab.model_2"), choices=choices, value=None, allow_custom_value=True)
    with gr.Row():
        typed = L.make(gr.Textbox, label=Key("ab.prompts"), placeholder=Key("ab.prompts_placeholder"), lines=3,
                       scale=3)
        with gr.Column(scale=2):
            prompt_file = L.make(gr.Dropdown, label=Key("ab.prompt_file"), allow_custom_value=True, value=None,
                                 choices=data_files(ctx.workspace.examples_dir / "benchmarks",
                                                    ctx.workspace.examples_dir / "data", ctx.uploads_dir))
            limit = L.make(gr.Number, value=10, precision=0, minimum=1, maximum=200, label=Key("ab.limit"))
    start = L.make(gr.Button, value=Key("ab.start"), variant="primary")
    status = gr.HTML()
    step = gr.Markdown()
    prompt = gr.HTML()
    with gr.Row():
        answer_a = gr.HTML()
        answer_b = gr.HTML()
    with gr.Row():
        pick_a = L.make(gr.Button, value=Key("ab.pick_a"))
        pick_tie = L.make(gr.Button, value=Key("ab.pick_tie"))
        pick_b = L.make(gr.Button, value=Key("ab.pick_b"))
    reveal = gr.Markdown()
    state = gr.State(None)

    def on_start(lang_value, one, two, typed_prompts, path, count, progress=gr.Progress()):
        if not one or not two:
            return None, views.error(text(lang_value, "ab.need_two")), "", "", "", "", ""
        try:
            path = ctx.workspace.data_source(path, "prompt file") if path else None
            prompts = blind_ab.prompts_from(typed_prompts or "", path, int(count or 10))
            progress(0.0, desc=text(lang_value, "ab.answering", model=one))
            answers_1 = blind_ab.answer_all(one, prompts)
            progress(0.5, desc=text(lang_value, "ab.answering", model=two))
            answers_2 = blind_ab.answer_all(two, prompts)
        except Exception as e:
            return None, views.error(e), "", "", "", "", ""
        # Saved in the terminal's format: `tunesmith eval --judge human --ab-file FILE` reads (and resumes) it.
        file = ctx.eval_dir / "ab" / f"ab_preferences-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        session = blind_ab.new_session((one, two), prompts, answers_1, answers_2, file=str(file))
        return (session, views.message("info", text(lang_value, "ab.ready")), *pair_view(session, lang_value), "")

    def judge(verdict):
        def on_pick(lang_value, session):
            if not session:
                return session, "", "", "", "", ""
            session = blind_ab.record(session, verdict)
            finished = blind_ab.current(session) is None
            return (session, *pair_view(session, lang_value), reveal_markdown(session, lang_value) if finished else "")
        return on_pick

    start.click(on_start, [lang, model_1, model_2, typed, prompt_file, limit],
                [state, status, step, prompt, answer_a, answer_b, reveal], api_name="start_ab")
    outputs = [state, step, prompt, answer_a, answer_b, reveal]
    pick_a.click(judge(blind_ab.A), [lang, state], outputs)
    pick_tie.click(judge(blind_ab.TIE), [lang, state], outputs)
    pick_b.click(judge(blind_ab.B), [lang, state], outputs)
