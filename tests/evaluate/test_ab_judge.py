"""The A/B judge flow against a real HTTP judge in this process (no HTTP mocks), plus a local model as judge."""

import socket

import pytest

from tests.conftest import network_address, write_jsonl
from tests.evaluate.judge_server import JudgeServer, RedirectServer
from tunesmith.errors import ConfigError, JudgeError
from tunesmith.evaluate.abstats import wilson_interval
from tunesmith.evaluate.abtest import ABOptions, ABTest, ab_options, format_ab, load_prompts
from tunesmith.evaluate.judges import HttpJudge, endpoint_base

PROMPTS = ["What are the support hours?", "How much is a day pass?", "Can I bring my dog?", "What is the deposit?",
           "Where is the office?", "unparseable: who founded Haneul Bikes?"]
# model 1's and model 2's answers: model 2 is GOOD on prompts 0-2, model 1 on prompt 3, both on 4
ANSWERS_1 = ["bad 0", "bad 1", "bad 2", "GOOD 3", "GOOD 4", "bad 5"]
ANSWERS_2 = ["GOOD 0", "GOOD 1", "GOOD 2", "bad 3", "GOOD 4", "GOOD 5"]
LABELS = ["before", "after"]


def prefers_good(question: str, a: str, b: str) -> str:
    if question.startswith("unparseable"):
        return "I would rather not say."
    if "GOOD" in a and "GOOD" in b:
        return "Both are equally good. [[tie]]"
    return "Answer A is more helpful. [[A]]" if "GOOD" in a else "Verdict: B"


@pytest.fixture
def no_judge_key(monkeypatch):
    for name in ("TUNESMITH_JUDGE_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def ab_test(tmp_path, judge: str, device: str = "cpu", **options) -> ABTest:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    test = ABTest(ABOptions(str(prompts), judge, **options), LABELS, tmp_path / "out", device)
    test.add_answers(1, ANSWERS_1)
    test.add_answers(2, ANSWERS_2)
    return test


def test_every_pair_is_judged_in_both_orders(tmp_path, no_judge_key):
    with JudgeServer(prefers_good) as judge:
        ab = ab_test(tmp_path, judge.url).run()
        asked = list(judge.asked)
    assert len(asked) == 2 * len(PROMPTS)
    for i, prompt in enumerate(PROMPTS):  # each pair was shown once each way round
        shown = {(a, b) for q, a, b in asked if q == prompt}
        assert shown == {(ANSWERS_1[i], ANSWERS_2[i]), (ANSWERS_2[i], ANSWERS_1[i])}
    assert ab["judge"] == {"kind": "endpoint", "name": f"{judge.url} (model judge-1)"}  # the only served model
    assert (ab["model_1"], ab["model_2"], ab["n_prompts"]) == ("before", "after", 6)
    assert (ab["wins"], ab["ties"], ab["losses"], ab["judged"]) == (3, 1, 1, 5)
    assert (ab["invalid"], ab["invalid_replies"], ab["inconsistent"]) == (1, 2, 0)
    assert ab["win_rate"] == pytest.approx(3.5 / 5)
    assert ab["ci95"] == pytest.approx(list(wilson_interval(3.5, 5)))
    assert [p["outcome"] for p in ab["pairs"]] == ["win", "win", "win", "loss", "tie", "invalid"]
    first = ab["pairs"][0]
    assert [(j["A"], j["B"]) for j in first["judgments"]] in ([("before", "after"), ("after", "before")],
                                                              [("after", "before"), ("before", "after")])
    assert [j["preferred"] for j in first["judgments"]] == ["after", "after"]
    assert first["shown"] == {"A": first["judgments"][0]["A"], "B": first["judgments"][0]["B"]}
    assert {j["verdict"] for j in ab["pairs"][5]["judgments"]} == {None}
    assert ab["pairs"][5]["judgments"][0]["reply"] == "I would rather not say."
    text = format_ab(ab)
    assert "after: 3 wins, 1 ties, 1 losses of 5 judged pairs" in text and "1 invalid (2 unparseable" in text
    assert "win rate of after: 70.0%" in text


def test_the_shown_order_is_random_per_pair(tmp_path, no_judge_key):
    with JudgeServer(prefers_good) as judge:
        pairs = ab_test(tmp_path, judge.url).pairs()
    assert {p["shown"]["A"] for p in pairs} == {"before", "after"}


@pytest.mark.parametrize("always", ["[[A]]", "Answer: B"])
def test_a_judge_that_follows_the_position_gives_only_inconsistent_ties(tmp_path, no_judge_key, always):
    with JudgeServer(lambda q, a, b: always) as judge:
        ab = ab_test(tmp_path, judge.url).run()
    n = len(PROMPTS)
    assert (ab["wins"], ab["ties"], ab["losses"], ab["inconsistent"], ab["invalid"]) == (0, n, 0, n, 0)
    assert ab["win_rate"] == 0.5
    assert f"{n} inconsistent across orders" in format_ab(ab)


def test_judge_model_is_named_when_the_endpoint_serves_several(tmp_path, no_judge_key):
    with JudgeServer(prefers_good, models=("big", "small")) as judge:
        with pytest.raises(JudgeError, match="it serves big, small; name the judge model with --judge-model"):
            ab_test(tmp_path, judge.url)
        with pytest.raises(JudgeError, match="no model 'huge' there; --judge-model must be one of big, small"):
            ab_test(tmp_path, judge.url, judge_model="huge")
        ab = ab_test(tmp_path, judge.url + "/chat/completions", judge_model="small").run()
    assert ab["judge"]["name"].endswith("(model small)") and ab["wins"] == 3


def test_api_key_comes_from_the_environment(tmp_path, no_judge_key, monkeypatch):
    with JudgeServer(prefers_good, key="s3cret") as judge:
        with pytest.raises(JudgeError, match="HTTP 401 .*export TUNESMITH_JUDGE_KEY"):
            ab_test(tmp_path, judge.url)
        monkeypatch.setenv("OPENAI_API_KEY", "wrong")
        with pytest.raises(JudgeError, match="the key in OPENAI_API_KEY was refused") as refused:
            ab_test(tmp_path, judge.url)
        assert "wrong" not in str(refused.value)
        monkeypatch.setenv("TUNESMITH_JUDGE_KEY", "s3cret")  # takes precedence over OPENAI_API_KEY
        assert ab_test(tmp_path, judge.url).run()["wins"] == 3


def test_an_unreachable_judge_is_one_clear_error(tmp_path, no_judge_key):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    with pytest.raises(JudgeError, match=rf"judge http://127.0.0.1:{port}/v1: cannot connect .*start the judge"):
        ab_test(tmp_path, f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("url", ["http://192.0.2.10:8000/v1", "http://judge.example.com/v1", "http://0.0.0.0:8000",
                                 "http://[fd00::5]:8000/v1"])
def test_plain_http_to_another_machine_is_refused(tmp_path, monkeypatch, url):
    """Refused before anything is sent (nothing listens at these addresses, so a request would fail differently)."""
    monkeypatch.setenv("TUNESMITH_JUDGE_KEY", "sk-real-key")
    with pytest.raises(JudgeError, match=r"plain http to another machine would send the API key .*--judge-insecure") \
            as refused:
        ab_test(tmp_path, url)
    assert "sk-real-key" not in str(refused.value) and len(str(refused.value).splitlines()) == 1
    assert HttpJudge(url, insecure=True).base.startswith("http://")  # the user's explicit choice
    for allowed in ("https://judge.example.com/v1", "http://127.0.0.1:8000/v1", "http://localhost:8000",
                    "http://[::1]:8000"):
        HttpJudge(allowed)  # https, or this machine: no flag needed


def test_a_judge_on_the_network_needs_judge_insecure(tmp_path, monkeypatch):
    address = network_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to serve a judge on")
    monkeypatch.setenv("TUNESMITH_JUDGE_KEY", "s3cret")
    with JudgeServer(prefers_good, key="s3cret", host="0.0.0.0") as judge:
        url = f"http://{address}:{judge.port}/v1"
        with pytest.raises(JudgeError, match="plain http to another machine"):
            ab_test(tmp_path, url)
        assert judge.authorizations == []  # refused before the key went anywhere
        assert ab_test(tmp_path, url, judge_insecure=True).run()["wins"] == 3
        assert set(judge.authorizations) == {"Bearer s3cret"}


def test_the_key_never_follows_a_redirect_to_another_origin(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_JUDGE_KEY", "s3cret")
    with JudgeServer(prefers_good, key="s3cret") as elsewhere, \
            RedirectServer(f"http://127.0.0.1:{elsewhere.port}") as moved:
        with pytest.raises(JudgeError, match=rf"redirects to another origin \(http://127.0.0.1:{elsewhere.port}/v1/"
                                             r"models\); the key is not sent there"):
            ab_test(tmp_path, moved.url)
        assert moved.authorizations == ["Bearer s3cret"]  # the judge the user named got it
        assert elsewhere.authorizations == []  # the other origin got no request at all


def test_a_redirect_within_the_judges_origin_is_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_JUDGE_KEY", "s3cret")
    with JudgeServer(prefers_good, key="s3cret", moved={"/old/v1/models": "/v1/models"}) as judge:
        HttpJudge(judge.url.replace("/v1", "/old/v1")).check()
    assert judge.authorizations == ["Bearer s3cret", "Bearer s3cret"]


def test_judge_insecure_belongs_to_a_plain_http_judge(tmp_path):
    with pytest.raises(ConfigError, match="--judge-insecure.*belong to an A/B test"):
        ab_options(None, None, judge_insecure=True)
    with pytest.raises(ConfigError, match="--judge-insecure allows a plain http:// --judge"):
        ab_options("p.jsonl", "https://api.example.com/v1", judge_insecure=True)
    assert ab_options("p.jsonl", "http://10.0.0.5:8000/v1", judge_insecure=True).judge_insecure


def test_endpoint_base_accepts_the_usual_spellings():
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"):
        assert endpoint_base(url) == "http://h:8000/v1"
    assert HttpJudge("https://api.example.com/openai/v1/").base == "https://api.example.com/openai/v1"


def test_ab_needs_exactly_two_models(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    with pytest.raises(ConfigError, match="exactly two models"):
        ABTest(ABOptions(str(prompts), "human"), ["only"], tmp_path)


def test_prompts_from_training_rows_and_benchmarks(tmp_path, alpaca_file):
    assert [p.text for p in load_prompts(str(alpaca_file), 2)] == ["What are the support hours?",
                                                                    "Who founded Haneul Bikes?"]
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Later turn"},
        {"role": "assistant", "content": "ok"}]}])
    [prompt] = load_prompts(str(chat))
    assert (prompt.text, prompt.system) == ("Hi?", "Be brief.")
    mc = write_jsonl(tmp_path / "mc.jsonl", [{"question": "Deposit?", "choices": ["5만 원", "없음"], "answer": "A"}])
    assert load_prompts(str(mc))[0].text == "Deposit?\nA. 5만 원\nB. 없음\nAnswer:"
    exact = write_jsonl(tmp_path / "exact.jsonl", [{"question": "앱 이름이 뭐예요?", "answer": 3}])
    assert load_prompts(str(exact))[0].text == "앱 이름이 뭐예요?"
    guanaco = write_jsonl(tmp_path / "guanaco.jsonl", [{"text": "### Human: Hi?### Assistant: Hello."}])
    assert load_prompts(str(guanaco))[0].text == "Hi?"  # a chat rendered as text has its question
    trl = write_jsonl(tmp_path / "trl.jsonl", [{"prompt": [{"role": "system", "content": "Be brief."},
                                                           {"role": "user", "content": "Hi?"}]}])
    [prompt] = load_prompts(str(trl))  # TRL's conversational prompt-only rows
    assert (prompt.text, prompt.system) == ("Hi?", "Be brief.")


def test_a_local_model_judges_too(tmp_path, tiny_model_dir):
    """A random tiny model as judge: every pair is asked in both orders and each reply is kept; replies it does not
    phrase as a verdict are invalid, never ties."""
    ab = ab_test(tmp_path, str(tiny_model_dir), judge_max_tokens=8).run()
    assert ab["judge"] == {"kind": "local", "name": f"local model {tiny_model_dir}"}
    assert all(len(p["judgments"]) == 2 for p in ab["pairs"])
    assert all(isinstance(j["reply"], str) for p in ab["pairs"] for j in p["judgments"])
    assert ab["judged"] + ab["invalid"] == len(PROMPTS)
    assert ab["invalid_replies"] == sum(j["verdict"] is None for p in ab["pairs"] for j in p["judgments"])
