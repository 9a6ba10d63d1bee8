"""The eval and export command lines the Evaluate and Export tabs run."""

from __future__ import annotations

import pytest

from tunesmith.webui.commands import BITS4, BITS8, GGUF, MERGED, eval_args, export_args


def test_eval_args():
    assert eval_args(["base", "runs/a"], ["b1.jsonl", "b2.jsonl"], "data.jsonl", "out/e", 5, 2) == [
        "eval", "--model", "base", "--model", "runs/a", "--benchmark", "b1.jsonl", "--benchmark", "b2.jsonl",
        "--dataset", "data.jsonl", "--out", "out/e", "--max-samples", "5", "--few-shot", "2"]
    assert eval_args(["base"], [], None, "o") == ["eval", "--model", "base", "--out", "o"]


@pytest.mark.parametrize("kind, flags", [(MERGED, []), (BITS4, ["--bits", "4"]), (BITS8, ["--bits", "8"]),
                                         (GGUF, ["--quant", "q4_0"])])
def test_export_kinds(kind, flags):
    assert export_args("runs/a", "exports/a", kind, quant="q4_0") == ["export", "runs/a", "--out", "exports/a", *flags]


def test_shard_size_is_for_safetensors_and_public_needs_a_repo():
    assert export_args("r", "o", MERGED, max_shard_size=" 500MB ")[-2:] == ["--max-shard-size", "500MB"]
    assert "--max-shard-size" not in export_args("r", "o", GGUF, max_shard_size="500MB")
    assert export_args("r", "o", MERGED, push_to_hub="me/bot", public=True)[-3:] == ["--push-to-hub", "me/bot",
                                                                                       "--public"]
    assert "--public" not in export_args("r", "o", MERGED, public=True)
    with pytest.raises(ValueError):
        export_args("r", "o", "zip")
