"""`tunesmith doctor`: the quickstart gets a clean bill; a template whose answers end with a token the chat template
does not write, a cutoff_len that cuts answers, repeated rows, validation rows seen in training and a model that
cannot fit each exit 1 and name the fix. No model weights are read."""

from __future__ import annotations

import json

import pytest

from tests.conftest import QA, ROOT, run_cli, write_jsonl
from tests.families.families import FAMILIES, family_config, family_tokenizer
from tunesmith.config import load_config
from tunesmith.data.packing import IGNORE
from tunesmith.doctor import doctor, to_html, to_text
from tunesmith.doctor.report import NOTE, OK, PROBLEM
from tunesmith.train.memory import CPU_TOKEN_CAP

QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def finding(report, check):
    return next(f for f in report.findings if f.check == check)


@pytest.fixture(autouse=True)
def no_weights(monkeypatch):
    """The doctor reads configs and tokenizers only: loading any weights fails the test."""
    from transformers import PreTrainedModel

    def refuse(*args, **kwargs):
        raise AssertionError("doctor loaded model weights")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))


def test_the_quickstart_gets_a_clean_bill():
    report = doctor(load_config(QUICKSTART, []), rows=2)
    assert report.exit_code == 0, to_text(report)
    assert {f.check: f.status for f in report.findings} == {
        "end of turn": OK, "PAD and EOS": NOTE, "BOS": OK, "saved template": OK, "cutoff_len": OK, "answers": OK,
        "placeholders": OK, "train / validation": OK, "memory": OK}  # SmolLM2 pads with its end-of-turn token: a note, not a problem
    assert "all 279 answers end with '<|im_end|>'" in finding(report, "end of turn").verdict
    # The rows are shown as training encodes them: the answer and its end-of-turn token are the trained part.
    first = report.rows[0]
    trained = [p.text for p in first.pieces if p.kind == "answer"]
    assert trained == ["A monthly rental costs 59,000 won, and you keep the bike at home.<|im_end|>"]
    assert "".join(p.text for p in first.pieces).startswith("<|im_start|>system\nYou are a helpful AI assistant")
    assert report.memory.fits and report.memory.token_budget == CPU_TOKEN_CAP  # what train chooses on a CPU


def test_a_template_ending_answers_with_a_token_chat_does_not_write_exits_1_with_the_fix(tiny_model_dir, tmp_path):
    """template=llama3 on SmolLM2's vocabulary: no <|eot_id|> token, so answers end with EOS while the chat template
    writes '<|eot_id|>' as text after them."""
    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    report = doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", "template=llama3"]), rows=1)
    eot = finding(report, "end of turn")
    assert report.exit_code == 1 and eot.status == PROBLEM
    assert "'<|eot_id|>'" in eot.verdict and "template=auto" in eot.fix


def test_an_unrecognised_llama3_template_on_a_base_tokenizer_names_template_llama3(embedded_dir, tmp_path):
    """A Llama 3 *base* tokenizer (EOS <|end_of_text|>) whose template is a Llama-3 variant recognition does not know:
    answers would end with EOS while the template ends turns with <|eot_id|>. The fix names template=llama3."""
    family = next(f for f in FAMILIES if f.slug == "llama3")
    tokenizer = family_tokenizer(embedded_dir, family)
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] | upper + "
                               "'<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
                               "{% if add_generation_prompt %}"
                               "{{ '<|start_header_id|>ASSISTANT<|end_header_id|>\\n\\n' }}{% endif %}")
    model = tmp_path / "llama3-base"
    tokenizer.save_pretrained(model)
    family_config(family, tokenizer).save_pretrained(model)  # config only: the doctor reads no weights
    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    report = doctor(load_config(None, [f"model={model}", f"dataset={data}"]), rows=1)
    eot = finding(report, "end of turn")
    assert report.stop == "<|end_of_text|>" and eot.status == PROBLEM
    assert "set template=llama3" in eot.fix
    fixed = doctor(load_config(None, [f"model={model}", f"dataset={data}", "template=llama3"]), rows=1)
    assert finding(fixed, "end of turn").status == OK and fixed.stop == "<|eot_id|>"


def test_cutoff_len_cutting_answers_says_how_many(tiny_model_dir, tmp_path):
    from tunesmith.data.dataset import encode_conversation
    from tunesmith.data.formats import Conversation
    from tunesmith.data.templates import get_template
    from tunesmith.model.loader import load_tokenizer

    rows = [{"instruction": q, "output": a * (i % 3 + 1)} for i, (q, a) in enumerate(QA * 2)]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    report = doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", "cutoff_len=70"]), rows=0)
    cut = finding(report, "cutoff_len")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    template = get_template("auto", tokenizer)
    full = [encode_conversation(Conversation([{"role": "user", "content": r["instruction"]},
                                              {"role": "assistant", "content": r["output"]}]), template, tokenizer,
                                cutoff_len=10**6) for r in rows]
    lose_end = sum(any(label != IGNORE for label in ex.labels[70:]) and
                   any(label != IGNORE for label in ex.labels[1:70]) for ex in full)
    whole = sum(all(label == IGNORE for label in ex.labels[1:70]) for ex in full)
    assert lose_end and whole  # the data was made so both happen
    assert cut.status == PROBLEM and report.exit_code == 1
    assert f"{lose_end} lose the end of their answer" in cut.verdict
    assert f"{whole} lose their whole answer" in cut.verdict
    assert f"raise cutoff_len to {max(len(ex) for ex in full)}" in cut.fix


def test_repeated_rows_and_validation_rows_seen_in_training(tiny_model_dir, tmp_path):
    rows = [{"instruction": q, "output": a} for q, a in QA]
    data = write_jsonl(tmp_path / "train.jsonl", rows + rows[:2])
    val = write_jsonl(tmp_path / "val.jsonl", rows[3:5] + [{"instruction": "New question?", "output": "New."}])
    report = doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"val_dataset={val}"]), rows=0)
    assert finding(report, "answers").status == PROBLEM
    assert "2 rows repeat another row exactly" in finding(report, "answers").verdict
    overlap = finding(report, "train / validation")
    assert overlap.status == PROBLEM and overlap.verdict.startswith("2 of 3 validation rows (val_dataset)")


def test_unfilled_placeholders_in_answers_are_found(tiny_model_dir, tmp_path):
    """LLaMA-Factory's identity.json ships with {{name}} and {{author}} to replace; left in, the model says them."""
    rows = [{"instruction": q, "output": a} for q, a in QA]
    rows += [{"instruction": "Who are you?", "output": "I am {{name}}, made by {{ author }}."},
             {"instruction": "Your name?", "output": "My name is {{name}}."},
             {"instruction": "Show a Jinja loop", "output": "```\n{% for x in xs %}{{x}}{% endfor %}\n```"}]
    data = write_jsonl(tmp_path / "identity.jsonl", rows)
    found = finding(doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}"]), rows=0),
                    "placeholders")
    assert found.status == PROBLEM and found.verdict.startswith(f"2 of {len(rows)} rows have unfilled placeholders")
    assert "{{name}} (2 rows), {{author}} (1 rows)" in found.verdict and "identity.json" in found.fix
    clean = write_jsonl(tmp_path / "clean.jsonl", rows[:-3] + rows[-1:])  # template code in a code block is content
    assert finding(doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={clean}"]), rows=0),
                   "placeholders").status == OK


def test_memory_counts_what_trains_and_says_when_it_does_not_fit(tiny_model_dir, tmp_path, monkeypatch):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.model.methods import get_method
    from tunesmith.model.methods.base import count_parameters

    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    config = AutoConfig.from_pretrained(tiny_model_dir)
    for method in ("lora", "full"):
        cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"method={method}", "dtype=fp32"])
        memory = doctor(cfg, rows=0).memory
        model = AutoModelForCausalLM.from_config(config)  # the real model, built here for the reference count
        trained, _ = count_parameters(get_method(method, cfg).wrap(model, checkpointing=False))
        base = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        lines = {line.label.split(" (")[0]: line.bytes for line in memory.lines}
        assert lines["weights"] == 4 * base and lines["gradients"] == 4 * trained
        assert lines["optimizer state"] == 8 * trained  # AdamW: two fp32 moments per trained value
        assert ("adapter" in lines) == (method == "lora")
    monkeypatch.setattr("tunesmith.train.memory.free_memory", lambda device: 2**20)  # 1 MiB free
    report = doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}"]), rows=0)
    mem = finding(report, "memory")
    assert mem.status == PROBLEM and not report.memory.fits and "method=qlora" in mem.fix
    assert torch.get_default_device().type == "cpu"  # the meta-device skeleton left no default behind


def test_preference_and_pretraining_rows(tiny_model_dir, tmp_path):
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": q, "chosen": a, "rejected": "I do not know."}
                                                   for q, a in QA])
    report = doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={prefs}", "stage=dpo"]), rows=1)
    assert [p.kind for p in report.rows[0].pieces if p.kind != "prompt"] == ["chosen"]
    assert [p.kind for p in report.rows[1].pieces if p.kind != "prompt"] == ["rejected"]
    text = write_jsonl(tmp_path / "docs.jsonl", [{"text": a * 20} for _, a in QA])
    report = doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={text}", "stage=pt",
                                       "cutoff_len=32"]), rows=1)
    assert finding(report, "cutoff_len").status == OK and report.exit_code == 0, to_text(report)


def test_cli_prints_the_report_writes_html_and_exits_by_verdict(tmp_path):
    page = tmp_path / "doctor.html"
    clean = run_cli("doctor", QUICKSTART, "--rows", "1", "--html", str(page))
    assert clean.returncode == 0, clean.stderr
    assert "fine to train" in clean.stdout and "\x1b[" not in clean.stdout  # no colours when not a terminal
    assert "<mark class='answer'>" in page.read_text() and "fine to train" in page.read_text()
    cut = run_cli("doctor", QUICKSTART, "cutoff_len=40", "--rows", "0")
    assert cut.returncode == 1 and "lose their whole answer" in cut.stdout and "raise cutoff_len" in cut.stdout
    bad = run_cli("doctor", QUICKSTART, "cutoff_len=-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_html_escapes_row_text(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": "<script>alert(1)</script>", "output": "a & b"}])
    page = to_html(doctor(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}"]), rows=1))
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    json.dumps(page)  # one self-contained string
