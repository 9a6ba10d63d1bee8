"""A model whose linear attention cannot keep packed rows apart on a CPU (Qwen3.5 without flash-linear-attention)
trains, evaluates and chats through the CLI: rows go unpacked instead of failing with transformers' traceback."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_a_linear_attention_model_trains_sft_and_dpo_evaluates_and_chats(hybrid_model_dir, alpaca_file, tmp_path):
    sft = run_cli("train", f"model={hybrid_model_dir}", f"dataset={alpaca_file}", "max_steps=2", "val_size=4",
                  "dtype=fp32", f"output_dir={tmp_path / 'sft'}")
    assert sft.returncode == 0, sft.stderr[-2000:]
    assert "cannot keep packed rows apart" in sft.stderr and "Traceback" not in sft.stderr
    logged = [json.loads(line) for line in (tmp_path / "sft" / "trainer_log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in r for r in logged) and any("loss" in r for r in logged)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": "Yes, gladly.", "rejected": "No."}) + "\n"
                             for i in range(8)))
    dpo = run_cli("train", f"model={hybrid_model_dir}", f"dataset={pairs}", "stage=dpo", "max_steps=2",
                  "dtype=fp32", f"output_dir={tmp_path / 'dpo'}")
    assert dpo.returncode == 0, dpo.stderr[-2000:]
    chat = run_cli("chat", str(tmp_path / "sft"), "--prompt", "Hi", "--max-new-tokens", "4", "--temperature", "0")
    assert chat.returncode == 0, chat.stderr[-2000:]
    evaluated = run_cli("eval", str(tmp_path / "sft"), "--dataset", str(alpaca_file), "--out", str(tmp_path / "ev"))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
