"""Chat tab: load a run, checkpoint, export or the base model (and unload it), set a system prompt and sampling,
and get streamed answers from the same `ChatSession` that `tunesmith chat` uses."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from tunesmith.infer.engine import SamplingParams
from tunesmith.webui import views
from tunesmith.webui.context import Context
from tunesmith.webui.i18n import Key, Labels, text
from tunesmith.webui.runs import loadable_models


@dataclass
class ChatTab:
    model: gr.Dropdown


def build(ctx: Context, L: Labels, lang: gr.Radio) -> ChatTab:
    with gr.Row():
        model = L.make(gr.Dropdown, label=Key("chat.model"), info=Key("chat.model_info"), allow_custom_value=True,
                       choices=loadable_models(ctx.root), value="base", scale=4, elem_id="ts-chat-model")
        refresh = L.make(gr.Button, value=Key("common.refresh"), scale=1)
        load = L.make(gr.Button, value=Key("chat.load"), variant="primary", scale=1, elem_id="ts-chat-load")
        unload = L.make(gr.Button, value=Key("chat.unload"), scale=1)
    status = gr.HTML(elem_id="ts-chat-status")
    system = L.make(gr.Textbox, label=Key("chat.system"), lines=2)
    with L.make(gr.Accordion, label=Key("chat.sampling"), open=False):
        with gr.Row():
            temperature = L.make(gr.Slider, minimum=0.0, maximum=2.0, step=0.05, value=0.7,
                                 label=Key("chat.temperature"), info=Key("chat.temperature_info"))
            top_p = L.make(gr.Slider, minimum=0.05, maximum=1.0, step=0.05, value=1.0, label=Key("chat.top_p"))
            top_k = L.make(gr.Number, value=0, precision=0, minimum=0, label=Key("chat.top_k"),
                           info=Key("chat.top_k_info"))
            max_new_tokens = L.make(gr.Number, value=256, precision=0, minimum=1, label=Key("chat.max_new_tokens"))
            repetition_penalty = L.make(gr.Slider, minimum=1.0, maximum=2.0, step=0.05, value=1.0,
                                        label=Key("chat.repetition_penalty"))
    chatbot = L.make(gr.Chatbot, label=Key("chat.conversation"), height=360, elem_id="ts-chatbot")
    history = gr.State([])  # [{"role", "content"}] as plain text: what ChatSession takes
    with gr.Row():
        message = L.make(gr.Textbox, label=Key("chat.message"), placeholder=Key("chat.message_placeholder"), scale=5,
                         elem_id="ts-chat-message")
        send = L.make(gr.Button, value=Key("chat.send"), variant="primary", scale=1, elem_id="ts-chat-send")
        clear = L.make(gr.Button, value=Key("chat.clear"), scale=1)

    def on_load(lang_value, spec):
        try:
            name = ctx.chat.load(spec)
        except Exception as e:
            return views.error(e)
        return views.message("ok", text(lang_value, "chat.loaded", name=name))

    def on_unload(lang_value):
        ctx.chat.unload()
        return views.message("info", text(lang_value, "chat.unloaded"))

    def on_send(lang_value, text_in, turns, system_prompt, temp, p, k, max_new, penalty):
        if not (text_in or "").strip():
            yield gr.update(), turns, gr.update(), gr.update()
            return
        if ctx.chat.loaded is None:
            yield gr.update(), turns, gr.update(), views.error(text(lang_value, "chat.no_model"))
            return
        params = SamplingParams(max_new_tokens=int(max_new or 256), temperature=float(temp), top_p=float(p),
                                top_k=int(k or 0), repetition_penalty=float(penalty))
        shown = [*turns, {"role": "user", "content": text_in}, {"role": "assistant", "content": ""}]
        try:
            for answer in ctx.chat.stream(turns, text_in, system_prompt, params):
                shown[-1] = {"role": "assistant", "content": answer}
                yield shown, turns, "", gr.update()
        except Exception as e:
            yield shown[:-1], turns, text_in, views.error(e)
            return
        yield shown, shown, "", gr.update()

    def on_clear():
        return [], []

    def on_refresh():
        return gr.update(choices=loadable_models(ctx.root))

    load.click(on_load, [lang, model], [status])
    unload.click(on_unload, [lang], [status])
    chat_inputs = [lang, message, history, system, temperature, top_p, top_k, max_new_tokens, repetition_penalty]
    send.click(on_send, chat_inputs, [chatbot, history, message, status])
    message.submit(on_send, chat_inputs, [chatbot, history, message, status])
    clear.click(on_clear, None, [chatbot, history])
    chatbot.clear(list, None, [history])  # the chat box's own bin icon starts over too
    refresh.click(on_refresh, None, [model])
    return ChatTab(model)
