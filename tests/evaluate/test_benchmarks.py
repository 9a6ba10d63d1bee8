"""Benchmark loading and scoring on the tiny random model: multiple choice equals a hand-computed argmax."""

import pytest
import torch

from tests.conftest import write_jsonl
from tunesmith.errors import DataError
from tunesmith.evaluate.benchmarks import load_benchmark, mc_messages, score, score_mc

MC = [
    {"question": "What are the support hours?", "choices": ["8 AM to 9 PM", "24 hours", "weekdays only"],
     "answer": "A"},
    {"question": "하늘바이크 보증금은?", "choices": ["5만 원", "10만 원"], "answer": 1},
    {"question": "Can I bring my dog?", "choices": ["No", "In a closed carrier", "Only on Sundays", "Yes"],
     "answer": "b"},
    {"question": "Who founded Haneul Bikes?", "choices": ["Yoon Seo-jin", "Kim Min-su"], "answer": "0"},
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from tunesmith.infer.loading import load_for_inference

    return load_for_inference(str(tiny_model_dir), "cpu")


def _by_hand(loaded, messages, choices):
    """Each option's summed log-probability, one unpadded forward pass per option."""
    prompt = loaded.encode_chat(messages)
    totals = []
    for choice in choices:
        option = loaded.tokenizer(choice, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + option])
        with torch.no_grad():
            logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), dim=-1)
        totals.append(sum(float(logprobs[len(prompt) - 1 + j, t]) for j, t in enumerate(option)))
    return totals


@pytest.mark.parametrize("few_shot", [0, 1])
def test_multiple_choice_equals_hand_computed_argmax(tiny, tmp_path, few_shot):
    bench = load_benchmark(str(write_jsonl(tmp_path / "mc.jsonl", MC)), few_shot=few_shot)
    assert bench.kind == "mc" and len(bench.items) == len(MC) - few_shot and len(bench.shots) == few_shot
    assert [it.answer for it in bench.items] == ["A", "B", "B", "A"][few_shot:]
    metrics, samples = score_mc(tiny, bench)
    expected = []
    for item in bench.items:
        totals = _by_hand(tiny, mc_messages(item, bench.shots), item.choices)
        expected.append("ABCD"[max(range(len(totals)), key=totals.__getitem__)])
    assert [s["prediction"] for s in samples] == expected
    correct = [e == it.answer for e, it in zip(expected, bench.items)]
    assert metrics["accuracy"] == pytest.approx(sum(correct) / len(correct))
    if few_shot:  # the shot is an earlier user/assistant turn answered with the right option's text
        messages = mc_messages(bench.items[0], bench.shots)
        assert messages[1] == {"role": "assistant", "content": "8 AM to 9 PM"}
        assert messages[-1]["content"].endswith("A. 5만 원\nB. 10만 원\nAnswer:")


def test_exact_answers_are_generated_greedily(tiny, tmp_path):
    rows = [{"question": "What is the deposit?", "answer": "50,000 won"}, {"question": "보증금은?", "answer": 50000}]
    bench = load_benchmark(str(write_jsonl(tmp_path / "exact.jsonl", rows)))
    assert bench.kind == "exact" and bench.items[1].answer == "50000"
    first, samples = score(tiny, bench)
    again, _ = score(tiny, bench)
    assert first == again  # greedy: deterministic
    assert set(first) == {"accuracy", "bleu", "rouge_l"} and len(samples) == 2


@pytest.mark.parametrize("row, message", [
    ({"question": "q", "choices": ["a", "b"], "answer": "C"}, "names no choice"),
    ({"question": "q", "choices": ["a", "b"], "answer": 2}, "names no choice"),
    ({"question": "q", "choices": ["only one"], "answer": "A"}, "'choices' should be a list"),
    ({"question": "", "answer": "x"}, "'question' should be non-empty text"),
    ({"prompt": "q", "answer": "x"}, "needs 'question' and 'answer'"),
    ({"question": "q", "answer": "x"}, "an exact-answer row in a multiple-choice benchmark"),
])
def test_malformed_rows_name_their_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [MC[0], row])
    with pytest.raises(DataError) as e:
        load_benchmark(str(path))
    assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value)
