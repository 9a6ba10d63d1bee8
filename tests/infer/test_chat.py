"""`tunesmith chat` driven through stdin: multi-turn, /reset, /system, and the one-shot form."""

import pytest

from tests.conftest import run_cli


def test_chat_through_stdin(tiny_model_dir):
    script = "Hello there\nAnd again\n/reset\n/system Be brief.\nHi\n/bogus\n/exit\nnever read\n"
    result = run_cli("chat", str(tiny_model_dir), "--temperature", "0", "--max-new-tokens", "5", stdin=script)
    assert result.returncode == 0, result.stderr[-2000:]
    # Three questions answered (the random tiny model may print newlines inside an answer); commands report on
    # stderr; /exit stops reading, so the last line is never answered.
    assert result.stderr.count("assistant> ") == 3
    assert "(conversation reset)" in result.stderr and "system prompt set" in result.stderr
    assert "unknown command /bogus" in result.stderr


def test_one_shot_prints_only_the_answer(tiny_model_dir):
    result = run_cli("chat", str(tiny_model_dir), "--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip("\n").splitlines()) <= 1 and "chatting with" not in result.stdout


def test_chat_refuses_a_reward_model_cleanly(tmp_path):
    run = tmp_path / "rm"
    run.mkdir()
    (run / "adapter_config.json").write_text('{"task_type": "SEQ_CLS", "base_model_name_or_path": "x"}')
    result = run_cli("chat", str(run), "--prompt", "hi")
    assert result.returncode == 2 and "tunesmith score" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, value, says", [
    ("--temperature", "-1", "--temperature must be from 0 to 2, got -1"),  # decoded garbage
    ("--repetition-penalty", "0", "--repetition-penalty must be from 0.01 to 10, got 0"),  # was a traceback
    ("--max-new-tokens", "-5", "--max-new-tokens must be from 1 to 1048576, got -5"),
    ("--top-p", "nan", "--top-p must be from 0 to 1, got nan"),
])
def test_sampling_flags_out_of_range_are_one_line_before_the_model_loads(flag, value, says):
    result = run_cli("chat", "/nonexistent-model", "--prompt", "hi", flag, value)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: chat: {says}"]
