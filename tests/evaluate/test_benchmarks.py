"""Benchmark loading and scoring on the tiny random model: multiple choice equals a hand-computed argmax (summed and
per character); exact-answer rows carry their match rule."""

import pytest
import torch

from tests.conftest import write_jsonl
from tunesmith.errors import DataError
from tunesmith.evaluate.benchmarks import load_benchmark, mc_messages, pick_options, score, score_mc

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
    expected, expected_norm = [], []
    for item in bench.items:
        totals = _by_hand(tiny, mc_messages(item, bench.shots), item.choices)
        expected.append("ABCD"[max(range(len(totals)), key=totals.__getitem__)])
        per_char = [t / len(c) for t, c in zip(totals, item.choices)]
        expected_norm.append("ABCD"[max(range(len(per_char)), key=per_char.__getitem__)])
    assert [s["prediction"] for s in samples] == expected
    assert [s["prediction_norm"] for s in samples] == expected_norm
    correct = [e == it.answer for e, it in zip(expected, bench.items)]
    correct_norm = [e == it.answer for e, it in zip(expected_norm, bench.items)]
    assert metrics["accuracy"] == pytest.approx(sum(correct) / len(correct))
    assert metrics["accuracy_norm"] == pytest.approx(sum(correct_norm) / len(correct_norm))
    if few_shot:  # the shot is an earlier user/assistant turn answered with the right option's text
        messages = mc_messages(bench.items[0], bench.shots)
        assert messages[1] == {"role": "assistant", "content": "8 AM to 9 PM"}
        assert messages[-1]["content"].endswith("A. 5만 원\nB. 10만 원\nAnswer:")


def test_length_normalisation_can_pick_another_option():
    """A short option with a lower total beats a long one on the sum; per character the long one is likelier."""
    choices = ["no", "in a closed carrier, up to 5 kg"]  # 2 and 31 characters
    logprobs = [-4.0, -9.3]                              # per character: -2.0 vs -0.3
    assert pick_options(logprobs, choices) == (0, 1)
    assert pick_options([-4.0, -70.0], choices) == (0, 0)  # per character -2.0 vs -2.26: both pick the short one
    assert pick_options([-3.0, -3.0], ["yes", "yes"]) == (0, 0)  # ties go to the first option


def test_exact_answers_are_generated_greedily(tiny, tmp_path):
    rows = [{"question": "What is the deposit?", "answer": "50,000 won"}, {"question": "보증금은?", "answer": 50000}]
    bench = load_benchmark(str(write_jsonl(tmp_path / "exact.jsonl", rows)))
    assert bench.kind == "exact" and bench.items[1].answer == "50000"
    first, samples = score(tiny, bench)
    again, _ = score(tiny, bench)
    assert first == again  # greedy: deterministic
    assert set(first) == {"accuracy", "bleu", "rouge_l"} and len(samples) == 2


def test_exact_rows_carry_their_match_rule(tmp_path):
    rows = [{"question": "App name?", "answer": "Haneul Ride", "match": "contains"},
            {"question": "Mascot?", "answer": "Parang"}, {"question": "Tier?", "answer": "Sky", "match": "exact"}]
    bench = load_benchmark(str(write_jsonl(tmp_path / "exact.jsonl", rows)))
    assert [it.match for it in bench.items] == ["contains", "exact", "exact"]


def test_exact_scoring_uses_each_rows_rule(tmp_path, monkeypatch):
    """The same reply is right under `contains` and wrong under `exact`; a number after a marker is the answer."""
    from tunesmith.evaluate import benchmarks

    rows = [{"question": "App name?", "answer": "Haneul Ride", "match": "contains"},
            {"question": "App name, exactly?", "answer": "Haneul Ride"},
            {"question": "Deposit?", "answer": "50,000", "match": "contains"}]
    bench = load_benchmark(str(write_jsonl(tmp_path / "exact.jsonl", rows)))
    replies = ["The app is called Haneul Ride.", "The app is called Haneul Ride.", "It was 30,000, now: 정답은 50000원"]
    monkeypatch.setattr(benchmarks, "generate_answers", lambda loaded, questions: replies[:len(questions)])
    metrics, samples = benchmarks.score_exact(None, bench)
    assert [s["correct"] for s in samples] == [True, False, True]
    assert metrics["accuracy"] == pytest.approx(2 / 3)


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


def test_unknown_match_rule_names_line_key_and_allowed_values(tmp_path):
    rows = [{"question": "q1", "answer": "a"}, {"question": "q2", "answer": "b", "match": "fuzzy"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_benchmark(str(path))
    message = str(e.value)
    assert message.startswith(f"{path}:2: 'match' \"fuzzy\"") and "exact, contains" in message


@pytest.mark.parametrize("name, rows, expected", [
    ("arc.jsonl", [{"id": "1", "question": "2+2?", "choices": {"text": ["3", "4", "5"], "label": ["A", "B", "C"]},
                    "answerKey": "B"},
                   {"id": "2", "question": "Capital?", "choices": {"text": ["Paris", "Rome"], "label": ["1", "2"]},
                    "answerKey": "1"}],  # some ARC rows label their options 1-4
     [("2+2?", ["3", "4", "5"], "B"), ("Capital?", ["Paris", "Rome"], "A")]),
    ("openbookqa.jsonl", [{"question_stem": "The sun is a", "choices": {"text": ["star", "moon"], "label": ["A", "B"]},
                           "answerKey": "A"}], [("The sun is a", ["star", "moon"], "A")]),
    ("kmmlu.csv", "question,answer,A,B,C,D,Category\n수도는?,1,서울,부산,대구,인천,geo\n",
     [("수도는?", ["서울", "부산", "대구", "인천"], "A")]),  # KMMLU: the answer counts from 1
    ("mmlu.csv", "question,A,B,C,D,answer\n2+2?,3,4,5,6,B\n", [("2+2?", ["3", "4", "5", "6"], "B")]),
    ("hellaswag.jsonl", [{"ctx": "He climbs and", "endings": ["falls.", "waves.", "sits.", "eats."], "label": "2"}],
     [("He climbs and", ["falls.", "waves.", "sits.", "eats."], "C")]),
    ("gsm8k.jsonl", [{"question": "48 + 24?", "answer": "48+24 = <<48+24=72>>72 clips.\n#### 72"}],
     [("48 + 24?", [], "72")]),  # GSM8K's worked solution: the reference is what follows ####
])
def test_public_benchmarks_are_read_as_published(tmp_path, name, rows, expected):
    path = tmp_path / name
    if isinstance(rows, str):
        path.write_text(rows, encoding="utf-8")
    else:
        write_jsonl(path, rows)
    assert [(i.question, i.choices, i.answer) for i in load_benchmark(str(path)).items] == expected


def test_a_downloaded_benchmark_folder_is_scored_on_its_test_split(tmp_path):
    """As `hf download --repo-type dataset` lays out gsm8k: train and test files side by side (a dev/val split stands in
    where there is no test one)."""
    write_jsonl(tmp_path / "gsm" / "main" / "train-00000-of-00001.jsonl", [{"question": "1+1?", "answer": "#### 2"}])
    write_jsonl(tmp_path / "gsm" / "main" / "test-00000-of-00001.jsonl", [{"question": "2+2?", "answer": "#### 4"}])
    assert [i.answer for i in load_benchmark(str(tmp_path / "gsm")).items] == ["4"]
    write_jsonl(tmp_path / "kmmlu" / "dev.jsonl", [{"question": "q", "choices": ["x", "y"], "answer": "A"}])
    assert [i.answer for i in load_benchmark(str(tmp_path / "kmmlu")).items] == ["A"]


def test_a_headerless_mmlu_csv_is_told_to_add_its_header(tmp_path):
    (tmp_path / "test.csv").write_text("2+2?,3,4,5,6,B\nCapital?,Paris,Rome,Berlin,Madrid,A\n", encoding="utf-8")
    with pytest.raises(DataError, match=r":2: .*add a header line such as question,A,B,C,D,answer"):
        load_benchmark(str(tmp_path / "test.csv"))
    (tmp_path / "zero.csv").write_text("question,A,B,answer\nq,x,y,0\n", encoding="utf-8")
    with pytest.raises(DataError, match="a number counts from 1"):
        load_benchmark(str(tmp_path / "zero.csv"))
