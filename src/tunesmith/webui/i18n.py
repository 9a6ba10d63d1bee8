"""Korean / English text for the Web UI.

Every visible string lives in one table per language (`strings_en`, `strings_ko`). Components are built through
`Labels`, which remembers which of their properties hold translated text, so the language switch can re-label the
whole page in one event. Messages produced by event handlers go through `text(lang, key)` with the language the
page currently shows.

Gradio's own `gr.I18n` follows the browser locale only and cannot be switched from the page, and handler messages
need the same table anyway: hence this small registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.webui import strings_en, strings_ko

TABLES = {"en": strings_en.STRINGS, "ko": strings_ko.STRINGS}
LANGUAGE_CHOICES = [("English", "en"), ("한국어", "ko")]
DEFAULT_LANGUAGE = "en"


def text(lang: str, key: str, **values: Any) -> str:
    """The string `key` in `lang` (English if the language is unknown), with `{name}` fields filled in."""
    table = TABLES.get(lang, TABLES[DEFAULT_LANGUAGE])
    # A key only English has yet (a config key added without its translation) still shows, in English.
    found = table[key] if key in table else TABLES[DEFAULT_LANGUAGE][key]
    return found.format(**values) if values else found


def language_from_header(accept_language: str | None) -> str:
    """Pick ko or en from an Accept-Language header ("ko-KR,ko;q=0.9,en;q=0.8"): the supported language with the
    highest q wins; anything else falls back to English."""
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in TABLES and q > best_q:
            best, best_q = lang, q
    return best


@dataclass(frozen=True)
class Key:
    """A translatable value passed to `Labels.make` in place of literal text."""

    name: str


def _resolve(value: Any, lang: str) -> Any:
    if isinstance(value, Key):
        return text(lang, value.name)
    if isinstance(value, list):  # choices: [(Key("..."), "value"), ...]
        return [(_resolve(c[0], lang), c[1]) if isinstance(c, tuple) else _resolve(c, lang) for c in value]
    return value


def _translatable(value: Any) -> bool:
    if isinstance(value, Key):
        return True
    return isinstance(value, list) and any(isinstance(c, tuple) and isinstance(c[0], Key) for c in value)


class Labels:
    """Builds components with translated text and re-labels them all when the language changes."""

    def __init__(self, lang: str = DEFAULT_LANGUAGE):
        self.lang = lang
        self._entries: list[tuple[Any, dict[str, Any]]] = []

    def make(self, component_class, *args, **kwargs):
        """`make(gr.Textbox, label=Key("train.model"), value="x")`: Key-valued properties follow the language."""
        keyed = {name: value for name, value in kwargs.items() if _translatable(value)}
        resolved = {name: _resolve(value, self.lang) for name, value in kwargs.items()}
        component = component_class(*args, **resolved)
        if keyed:
            self._entries.append((component, keyed))
        return component

    @property
    def components(self) -> list:
        return [component for component, _ in self._entries]

    def updates(self, lang: str) -> list[dict]:
        import gradio as gr

        return [gr.update(**{name: _resolve(value, lang) for name, value in keyed.items()})
                for _, keyed in self._entries]
