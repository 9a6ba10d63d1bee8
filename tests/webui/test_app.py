"""The page as a whole: it builds, every label follows the language switch, and `tunesmith webui` starts safely."""

from __future__ import annotations

import socket

import gradio as gr
import pytest

from tests.conftest import run_cli
from tunesmith.errors import TunesmithError
from tunesmith.webui.app import build_app, launch
from tunesmith.webui.context import Context
from tunesmith.webui.i18n import Labels


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    labels = Labels("en")
    demo = build_app(Context(tmp_path_factory.mktemp("runs")), labels)
    return demo, labels


def test_every_translated_component_follows_the_language_switch(page):
    _, labels = page
    assert len(labels.components) > 80
    english, korean = labels.updates("en"), labels.updates("ko")
    assert len(english) == len(korean) == len(labels.components)
    tabs = [c for c in labels.components if isinstance(c, gr.Tab)]
    assert [c.label for c in tabs] == ["Train", "Evaluate", "Chat", "Export", "Runs"]
    assert [u["label"] for c, u in zip(labels.components, korean) if isinstance(c, gr.Tab)] == \
        ["학습", "평가", "대화", "내보내기", "실행 기록"]
    changed = sum(e != k for e, k in zip(english, korean))
    assert changed > 0.9 * len(english)  # advanced keys keep their key name as label, but their help changes


def test_no_text_field_asks_for_a_token(page):
    demo, labels = page
    boxes = [b for b in demo.blocks.values() if isinstance(b, gr.Textbox)]
    assert boxes
    for lang in ("en", "ko"):
        for component, update in zip(labels.components, labels.updates(lang)):
            if isinstance(component, gr.Textbox):
                assert "token" not in str(update.get("label", "")).lower()
                assert "토큰" not in str(update.get("label", ""))
    assert all(getattr(b, "type", "text") != "password" for b in boxes)


def test_cli_binds_this_machine_by_default():
    result = run_cli("webui", "--help")
    assert result.returncode == 0
    assert "--host" in result.stdout and "127.0.0.1" in result.stdout and "--output-root" in result.stdout


@pytest.mark.parametrize("port", [0, 65536, 99999, -1])
def test_a_number_that_is_no_port_is_refused_before_anything_listens(port):
    from tunesmith.webserver import bind

    with pytest.raises(TunesmithError, match=rf"^webui: --port {port} is not a port; use 1-65535$"):
        bind("127.0.0.1", port, "webui")


def test_a_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(TunesmithError, match=f"cannot listen on 127.0.0.1:{port}"):
            launch("127.0.0.1", port, str(tmp_path / "runs"))
