"""The Chat tab's model: loaded with load_for_inference, answers streamed from ChatSession."""

from __future__ import annotations

import itertools

import pytest

from tunesmith.errors import ModelError
from tunesmith.infer.chat import ChatSession
from tunesmith.infer.engine import SamplingParams
from tunesmith.webui.chat_model import ChatModel


def test_answers_stream_in_growing_pieces_and_match_chat(tiny_model_dir):
    chat = ChatModel()
    assert chat.load(str(tiny_model_dir)) == tiny_model_dir.name
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=0)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    shown = list(chat.stream(history, "Support hours?", "Be brief.", params))
    assert len(shown) > 1 and shown[-1]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(shown))
    session = ChatSession(chat.loaded, params, "Be brief.")
    session.history = list(history)
    assert session.ask("Support hours?") == shown[-1]  # the same answer `tunesmith chat` gives
    chat.unload()
    assert chat.loaded is None and chat.spec is None
    with pytest.raises(RuntimeError, match="no model loaded"):
        list(chat.stream([], "Hi", None, params))


def test_a_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelError):
        ChatModel().load(str(tmp_path / "missing") + "/")
