"""`tunesmith eval` end to end on the tiny model, two models side by side, plus the malformed-row exit."""

import json
import math
import shutil

import pytest
import torch

from tests.conftest import run_cli, write_jsonl

MC = [{"question": "What are the support hours?", "choices": ["8 AM to 9 PM", "24 hours"], "answer": "A"},
      {"question": "하늘바이크 보증금은?", "choices": ["5만 원", "10만 원", "없음"], "answer": 0},
      {"question": "Can I bring my dog?", "choices": ["No", "In a closed carrier"], "answer": "B"}]
EXACT = [{"question": "What is the deposit?", "answer": "50,000 won"},
         {"question": "앱 이름이 뭐예요?", "answer": "하늘라이드"}]


def test_eval_two_models_side_by_side(tiny_model_dir, tmp_path, alpaca_file):
    other = shutil.copytree(tiny_model_dir, tmp_path / "tiny-b")
    mc = write_jsonl(tmp_path / "mc.jsonl", MC)
    exact = write_jsonl(tmp_path / "exact.jsonl", EXACT)
    out = tmp_path / "eval"
    r = run_cli("eval", str(tiny_model_dir), "--model", str(other), "--dataset", str(alpaca_file),  # as chat takes it
                "--benchmark", str(mc), "--benchmark", str(exact), "--out", str(out), "--max-samples", "8",
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "eval_results.json").read_text())
    labels = [m["label"] for m in results["models"]]
    assert labels == [tiny_model_dir.name, "tiny-b"]
    assert [(b["name"], b["kind"], b["n"]) for b in results["benchmarks"]] == [("mc", "mc", 3), ("exact", "exact", 2)]
    for label in labels:
        m = results["metrics"][label]
        assert set(m) == {"eval_loss", "perplexity", "eval_tokens", "mc/accuracy", "mc/accuracy_norm", "exact/accuracy",
                          "exact/bleu", "exact/rouge_l"}
        assert m["perplexity"] == pytest.approx(math.exp(m["eval_loss"]))
        assert 0 <= m["mc/accuracy"] <= 1 and 0 <= m["exact/bleu"] <= 100 and 0 <= m["exact/rouge_l"] <= 1
    a, b = (results["metrics"][lab] for lab in labels)
    assert a == b  # the same weights under two paths measure the same
    assert results["samples"]["exact"][0]["predictions"].keys() == set(labels)
    assert results["samples"]["mc"][1]["answer"] == "A"
    # the table: rows = metrics, columns = models
    header = next(line for line in r.stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", *labels]
    assert any(line.startswith("mc/accuracy") for line in r.stdout.splitlines())
    html = (out / "report.html").read_text()
    for section in ("id='models'", "id='metrics'", "id='samples'", "exact/rouge_l", "하늘라이드", "What is the deposit?"):
        assert section in html
    assert "<link" not in html and "<script" not in html and "http" not in html  # self-contained


def test_eval_loss_is_the_token_weighted_mean(tiny_model_dir, alpaca_file):
    """Packed evaluation equals one unpacked forward pass per row, weighted by answer tokens."""
    from tunesmith.data.dataset import encode_conversation
    from tunesmith.data.packing import IGNORE
    from tunesmith.evaluate.runner import dataset_loss, load_dataset_items
    from tunesmith.infer.loading import load_for_inference

    loaded = load_for_inference(str(tiny_model_dir), "cpu")
    items = load_dataset_items(str(alpaca_file), max_samples=6)
    total, count = 0.0, 0
    for item in items:
        ex = encode_conversation(item, loaded.template, loaded.tokenizer, 1024)
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([ex.input_ids])).logits[0, :-1].float()
        targets = torch.tensor(ex.labels[1:])
        keep = targets != IGNORE
        total += float(torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"))
        count += int(keep.sum())
    measured = dataset_loss(loaded, items)
    assert measured["eval_tokens"] == count
    assert measured["eval_loss"] == pytest.approx(total / count, rel=1e-4)


def test_eval_loss_of_rendered_chats_is_taken_on_their_answers_as_sft_trains_them(tmp_path):
    from tunesmith.data.formats import Conversation, Document
    from tunesmith.evaluate.runner import load_dataset_items

    path = write_jsonl(tmp_path / "test.jsonl", [{"text": "<s>[INST] Hi? [/INST] Hello. </s>"}, {"text": "A story."}])
    chat, story = load_dataset_items(str(path))
    assert isinstance(chat, Conversation) and chat.messages[-1] == {"role": "assistant", "content": "Hello."}
    assert isinstance(story, Document)  # plain text: the loss on every token, as stage=pt


@pytest.mark.parametrize("flag, value, says", [("--max-samples", "-2", "--max-samples must be 1 or more, got -2"),
                                               ("--few-shot", "-1", "--few-shot must be 0 or more, got -1")])
def test_counts_below_their_range_are_one_line(tmp_path, flag, value, says):
    exact = write_jsonl(tmp_path / "exact.jsonl", EXACT)
    r = run_cli("eval", "--model", "base", "--benchmark", str(exact), "--out", str(tmp_path / "o"), flag, value)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: eval: {says}"]


def test_malformed_benchmark_row_exits_2_with_its_line(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [MC[0], {"question": "q", "choices": ["a", "b"], "answer": "Z"}])
    r = run_cli("eval", "--model", "base", "--benchmark", str(bad), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert f"{bad}:2: 'answer' \"Z\" names no choice" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
