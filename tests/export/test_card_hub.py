"""Model card contents, no local paths or tokens anywhere in an export, and the private-by-default hub push
(the hub is a recorder injected in place of HfApi: nothing is uploaded)."""

import json
import logging

import pytest

from tests.export.conftest import FakeHub
from tunesmith.export import ExportError, export_run

SECRET = "hf_" + "NotARealToken" * 3  # built at run time so secret scanners do not flag the file


def test_card_describes_the_run_and_leaks_no_path_or_token(lora_run, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = export_run(lora_run, tmp_path / "faq-bot", progress=False).out
    card = (out / "README.md").read_text()
    records = [json.loads(line) for line in (lora_run / "trainer_log.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in records if "loss" in r][-1]
    eval_loss = [r["eval_loss"] for r in records if "eval_loss" in r][-1]
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\n")
    for expected in ("# faq-bot", f"**{tiny_model_dir.name}**", "method `lora`", "stage `sft`", "lora-faq.jsonl",
                     "| learning_rate | `0.01` |", "| lora_rank | `16` |", "| cutoff_len | `64` |",
                     f"final train loss: **{train_loss:.4f}** (step 2)", f"final eval loss: **{eval_loss:.4f}**",
                     'AutoModelForCausalLM.from_pretrained("./faq-bot")'):
        assert expected in card, expected
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data, path
            for local in (tmp_path, lora_run, tiny_model_dir):
                assert str(local).encode() not in data, (path, local)


def test_push_creates_a_private_repo_and_uploads_the_export(lora_run, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    hub = FakeHub()
    result = export_run(lora_run, tmp_path / "faq-bot", quant="q8_0", push_to_hub="someone/faq-bot", hub_api=hub,
                        progress=False)
    assert hub.created == [{"repo_id": "someone/faq-bot", "private": True, "repo_type": "model", "exist_ok": True}]
    assert hub.commits == [("someone/faq-bot", ["Modelfile", "README.md", "faq-bot.Q8_0.gguf"])]
    assert result.url == "https://huggingface.co/someone/faq-bot"
    card = (result.out / "README.md").read_text()
    assert "ollama create faq-bot -f Modelfile" in card and "tags: [tunesmith, lora, sft, gguf]" in card
    captured = capsys.readouterr()
    assert SECRET not in caplog.text + captured.out + captured.err


def test_public_push_and_refusing_a_public_repo_by_default(lora_run, tmp_path):
    public = FakeHub()
    export_run(lora_run, tmp_path / "a", push_to_hub="someone/a", public=True, hub_api=public, progress=False)
    assert public.created[0]["private"] is False and public.commits
    assert "model.safetensors" in public.commits[0][1] and ".tunesmith-export" not in public.commits[0][1]

    already_public = FakeHub(existing_private=False)
    with pytest.raises(ExportError, match="already exists and is public; pass --public"):
        export_run(lora_run, tmp_path / "b", push_to_hub="someone/b", hub_api=already_public, progress=False)
    assert already_public.commits == []


def test_bad_options_fail_before_any_work(lora_run, tmp_path):
    cases = [({"push_to_hub": "no-slash"}, "write it as user/name"),
             ({"public": True}, "--public only applies together with --push-to-hub"),
             ({"fmt": "gguf", "bits": 4}, "--bits applies to --format hf"),
             ({"quant": "q8_0", "fmt": "hf"}, "--quant applies to --format gguf"),
             ({"quant": "q8_0", "max_shard_size": "1GB"}, "a GGUF export is one file")]
    for kwargs, message in cases:
        with pytest.raises(ExportError, match=message):
            export_run(lora_run, tmp_path / "never", progress=False, **kwargs)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ExportError, match="is the run directory itself"):
        export_run(lora_run, lora_run, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already holds other files"):
        export_run(lora_run, tmp_path / "busy", progress=False)


def test_push_with_the_hub_unreachable_stops_before_any_work(lora_run, tmp_path, monkeypatch):
    from tunesmith import offline

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(offline, "hub_reachable", lambda: False)
    with pytest.raises(ExportError, match=r"--push-to-hub: the hub \(.*\) cannot be reached from this machine; "
                                          r"export without --push-to-hub now and upload the folder later"):
        export_run(lora_run, tmp_path / "never", push_to_hub="someone/faq-bot", progress=False)
    assert not (tmp_path / "never").exists()


class NetworkGone(FakeHub):
    def create_commit(self, repo_id, operations, *, commit_message, repo_type):
        raise ConnectionResetError("Connection reset by peer")


def test_a_network_error_during_the_upload_is_one_line_and_keeps_the_export(lora_run, tmp_path):
    with pytest.raises(ExportError) as err:
        export_run(lora_run, tmp_path / "faq-bot", push_to_hub="someone/faq-bot", hub_api=NetworkGone(),
                   progress=False)
    assert str(err.value) == (f"push to someone/faq-bot failed: ConnectionResetError: Connection reset by peer; the "
                              f"export itself is complete in {tmp_path / 'faq-bot'}, upload it with `hf upload` once "
                              "this is fixed")
    assert (tmp_path / "faq-bot" / "model.safetensors").exists()
