"""The Train tab's widgets, generated from `TrainConfig`'s fields (type, choices, default, help), and the
conversion between their values and config values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from tunesmith.webui.form import (
    ADVANCED_FIELDS,
    HEAD_FIELDS,
    MAIN_FIELDS,
    choices,
    default,
    from_widget,
    kind,
    to_widget,
)
from tunesmith.webui.i18n import Key, Labels

EMBEDDED, LOCAL_PATH, HUB_ID = "embedded", "path", "hub"
# Every key but `model` (which is the source radio + the path box) in the order the handlers receive them.
WIDGET_FIELDS = tuple(name for name in HEAD_FIELDS + MAIN_FIELDS + ADVANCED_FIELDS if name != "model")


def field_widget(L: Labels, name: str, value: Any = None, **extra):
    """One widget for a config key: choices -> dropdown, bool -> checkbox, numbers -> number box, else text.
    Main keys get a translated name; advanced ones show the key itself (what a YAML file or key=value uses)."""
    value = to_widget(name, default(name) if value is None else value)
    label = Key(f"field.{name}") if name in HEAD_FIELDS + MAIN_FIELDS else name
    common = {"label": label, "info": Key(f"help.{name}"), "value": value, "elem_id": f"ts-field-{name}", **extra}
    k = kind(name)
    if k == "choice":
        return L.make(gr.Dropdown, choices=choices(name), **common)
    if k == "bool":
        return L.make(gr.Checkbox, **common)
    if k == "int":
        return L.make(gr.Number, precision=0, **common)
    if k == "float":
        return L.make(gr.Number, **common)
    return L.make(gr.Textbox, **common)


def model_widgets(L: Labels) -> tuple[gr.Radio, gr.Textbox]:
    source = L.make(gr.Radio, choices=[(Key("train.model_embedded"), EMBEDDED), (Key("train.model_path"), LOCAL_PATH),
                                       (Key("train.model_hub"), HUB_ID)],
                    value=EMBEDDED, label=Key("field.model"), info=Key("help.model"), elem_id="ts-model-source")
    location = L.make(gr.Textbox, label=Key("train.model_location"), placeholder=Key("train.model_placeholder"),
                      elem_id="ts-field-model")
    return source, location


def form_values(model_source: str, model_location: str, *widget_values: Any) -> dict[str, Any]:
    """Widget values (in WIDGET_FIELDS order) -> config values."""
    location = (model_location or "").strip()
    values: dict[str, Any] = {"model": None if model_source == EMBEDDED else (location or None)}
    for name, raw in zip(WIDGET_FIELDS, widget_values, strict=True):
        values[name] = from_widget(name, raw)
    return values


def widget_values(config: dict[str, Any]) -> list[Any]:
    """Config values -> [model source, model location, *widgets] (for loading a config file into the form)."""
    model = config.get("model")
    source = EMBEDDED if not model else LOCAL_PATH if Path(model).expanduser().exists() else HUB_ID
    return [source, model or "", *(to_widget(name, config[name]) for name in WIDGET_FIELDS)]
