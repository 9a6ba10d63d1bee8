"""`tunesmith eval --ab` end to end: a tiny model against a tiny fine-tuned run, judged by a real local HTTP judge
or by a person typing into stdin; and the human session's file and resume on their own."""

import io
import json

import pytest

from tests.conftest import QA, run_cli, write_jsonl
from tests.evaluate.judge_server import JudgeServer
from tunesmith.errors import ConfigError, DataError
from tunesmith.evaluate.abtest import ab_options
from tunesmith.evaluate.human import run_session

PROMPTS = [{"instruction": "What are the support hours?", "output": "8 to 9."},
           {"instruction": "How much is a day pass?", "output": "12,000 won."},
           {"instruction": "unparseable: can I bring my dog?", "output": "In a carrier."},
           {"instruction": "Not used: --ab-max 3 stops before this one", "output": "-"}]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_model_dir):
    """A 2-step run on the tiny model: a run directory with trainer_log.jsonl, so the report draws its curves."""
    from tunesmith.config import load_config
    from tunesmith.train.loop import train

    data = write_jsonl(tmp_path_factory.mktemp("data") / "faq.jsonl",
                       [{"instruction": q, "output": a} for q, a in QA * 2])
    out = tmp_path_factory.mktemp("finetuned")
    train(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={out}", "val_size=4",
                             "max_steps=2", "per_device_batch_size=2", "gradient_accumulation_steps=1",
                             "learning_rate=1e-2", "device=cpu"]), show_progress=False)
    return out


def always_a_except_unparseable(question: str, a: str, b: str) -> str:
    return "no idea, sorry" if question.startswith("unparseable") else "[[A]]"


def test_eval_ab_with_an_http_judge(tiny_model_dir, finetuned, tmp_path, monkeypatch):
    """In process (the CLI path is the human test's): the whole eval with an A/B judged over real HTTP."""
    from tunesmith.evaluate.abtest import format_ab
    from tunesmith.evaluate.runner import run_eval

    for name in ("TUNESMITH_JUDGE_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    exact = write_jsonl(tmp_path / "exact.jsonl", [{"question": "What is the deposit?", "answer": "50,000 won"}])
    out = tmp_path / "eval"
    with JudgeServer(always_a_except_unparseable) as judge:
        results = run_eval([str(tiny_model_dir), str(finetuned)], None, [str(exact)], str(out), device="cpu",
                           ab=ab_options(str(prompts), judge.url, max_prompts=3, max_new_tokens=6))
        asked = list(judge.asked)
    one, two = tiny_model_dir.name, finetuned.name
    assert len(asked) == 6 and {q for q, _, _ in asked} == {p["instruction"] for p in PROMPTS[:3]}
    assert json.loads((out / "eval_results.json").read_text()) == results
    ab = results["ab"]
    assert (ab["model_1"], ab["model_2"], ab["n_prompts"]) == (one, two, 3)
    # a judge that always says "A" prefers each model once per pair: position bias, reported as such
    assert (ab["wins"], ab["ties"], ab["losses"], ab["inconsistent"]) == (0, 2, 0, 2)
    assert (ab["invalid"], ab["invalid_replies"], ab["judged"], ab["win_rate"]) == (1, 2, 2, 0.5)
    assert set(ab["pairs"][0]["answers"]) == {one, two}
    summary = format_ab(ab)
    assert f"A/B: {two} (model 2) vs {one} (model 1) on 3 prompts; judge: {judge.url} (model judge-1)" in summary
    assert "1 invalid (2 unparseable judge replies, left out); 2 inconsistent across orders" in summary
    assert set(results["metrics"][two]) == {"exact/accuracy", "exact/bleu", "exact/rouge_l"}
    curves = results["training"][two]
    assert [s for s, _ in curves["train"]] == [1, 2] and [s for s, _ in curves["eval"]] == [0, 2]
    assert one not in results.get("training", {})
    html = (out / "report.html").read_text()
    for part in ("id='curves'", "<svg", "<polyline", "Metrics: before vs after", f"change {two} vs {one}",
                 "id='ab'", "inconsistent pairs", "id='ab-samples'", "no idea, sorry", "id='samples'"):
        assert part in html, part
    assert "<script" not in html and "<link" not in html and "<img" not in html


def test_human_mode_through_stdin(tiny_model_dir, finetuned, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "eval"
    r = run_cli("eval", "--model", str(tiny_model_dir), "--model", str(finetuned), "--ab", str(prompts),
                "--judge", "human", "--ab-max", "3", "--ab-max-new-tokens", "4", "--out", str(out), "--device", "cpu",
                stdin="x\n1\nt\nq\n")
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = tiny_model_dir.name, finetuned.name
    reveal = r.stdout.index(f"Revealed: model 1 = {one}, model 2 = {two}")
    before = r.stdout[:reveal]
    assert one not in before and two not in before  # blind until the end
    assert "Please type 1, 2, t, s or q." in before and before.count("Which is better?") == 4
    assert "Prompt 1 of 3:\nWhat are the support hours?" in before and "Prompt 3 of 3" in before
    lines = [json.loads(line) for line in (out / "ab_preferences.jsonl").read_text().splitlines()]
    assert [(x["index"], x["choice"]) for x in lines] == [(0, "A"), (1, "tie")]
    ab = json.loads((out / "eval_results.json").read_text())["ab"]
    first_a = lines[0]["A"]
    assert (ab["wins"], ab["losses"]) == ((1, 0) if first_a == two else (0, 1))
    assert (ab["ties"], ab["judged"], ab["not_judged"], ab["invalid"]) == (1, 2, 1, 0)
    assert f"prompt 1: you chose A = {first_a}" in r.stdout[reveal:]
    assert "1 not judged" in r.stdout and "one judgment per pair" in r.stdout


def pairs() -> list[dict]:
    return [{"index": i, "prompt": f"question {i}", "answers": {"m1": f"one {i}", "m2": f"two {i}"},
             "shown": {"A": "m1", "B": "m2"} if i % 2 else {"A": "m2", "B": "m1"}} for i in range(3)]


def test_a_human_session_resumes_from_its_file(tmp_path):
    path = tmp_path / "prefs.jsonl"
    first, out = pairs(), io.StringIO()
    run_session(first, ["m1", "m2"], path, io.StringIO("1\nq\n"), out)
    assert [p["outcome"] for p in first] == ["win", "not judged", "not judged"]  # pair 0 showed m2 as A
    second, out = pairs(), io.StringIO()
    run_session(second, ["m1", "m2"], path, io.StringIO("2\ns\n"), out)  # then end of input
    assert "Resuming: 1 of 3 already judged." in out.getvalue()
    assert "Prompt 1 of 3" not in out.getvalue() and "Prompt 2 of 3:\nquestion 1" in out.getvalue()
    assert [p["outcome"] for p in second] == ["win", "win", "skipped"]
    assert [json.loads(x)["choice"] for x in path.read_text().splitlines()] == ["A", "B", "skip"]
    with pytest.raises(DataError, match=rf"{path}:1: this file compares m2 and m1, not x and y"):
        run_session(pairs(), ["x", "y"], path, io.StringIO(""), io.StringIO())
    other = pairs()
    other[0]["prompt"] = "another question"
    with pytest.raises(DataError, match=rf"{path}:1: this prompt is not prompt 0 of this A/B test"):
        run_session(other, ["m1", "m2"], path, io.StringIO(""), io.StringIO())


def test_ab_flags_go_together():
    assert ab_options(None, None) is None
    with pytest.raises(ConfigError, match="--ab PROMPTS_FILE and --judge .* go together"):
        ab_options("p.jsonl", None)
    with pytest.raises(ConfigError, match="belong to an A/B test"):
        ab_options(None, None, judge_model="gpt")
    with pytest.raises(ConfigError, match="--ab-file holds a person's choices"):
        ab_options("p.jsonl", "http://127.0.0.1:1/v1", preferences_file="x.jsonl")
    with pytest.raises(ConfigError, match="--ab-max must be >= 1"):
        ab_options("p.jsonl", "human", max_prompts=0)


def test_a_preferences_file_of_another_test_is_refused_before_any_answer(tmp_path):
    from tunesmith.evaluate.abtest import ABOptions, ABTest

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hi"}])
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [{"index": 0, "prompt": "other", "choice": "A", "A": "x", "B": "y"}])
    with pytest.raises(DataError, match=rf"{prefs}:1: this prompt is not prompt 0"):
        ABTest(ABOptions(str(prompts), "human", preferences_file=str(prefs)), ["x", "y"], tmp_path)
