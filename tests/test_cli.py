"""The real `tunesmith` CLI on a tiny random Llama: output layout, falling loss, loadable adapter, clean errors."""

import json

from tests.conftest import QA, run_cli, write_jsonl

SECRET = "hf_" + "NotARealToken" * 3  # built at run time so secret scanners do not flag the file
LAYOUT = {"adapter_config.json", "adapter_model.safetensors", "config.yaml", "trainer_log.jsonl", "loss.png",
          "tokenizer.json", "tokenizer_config.json", "tensorboard", "checkpoints", "README.md"}


def test_train_cli_end_to_end(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}",
                     "max_steps=12", "per_device_batch_size=2", "gradient_accumulation_steps=2", "val_size=4",
                     "learning_rate=1e-2", "eval_steps=4", "save_steps=4", "logging_steps=2", "warmup_steps=0",
                     env={"HF_TOKEN": SECRET})
    assert result.returncode == 0, result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    assert f"adapter: {out}/adapter_model.safetensors" in result.stdout and "loss.png" in result.stdout
    assert LAYOUT <= {p.name for p in out.iterdir()}
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step-4", "step-8"]
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json"} <= {
        p.name for p in (out / "checkpoints" / "step-8").iterdir()}
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    train_lines = [r for r in records if "loss" in r]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert [r["step"] for r in train_lines] == [2, 4, 6, 8, 10, 12]
    assert {"lr", "grad_norm", "tokens_per_s", "samples_per_s", "eta_s", "epoch"} <= set(train_lines[0])
    assert train_lines[-1]["loss"] < train_lines[0]["loss"]
    assert len(evals) == 4 and evals[-1] < evals[0]
    assert records[-1]["done"] is True

    # The resolved config re-runs the same job.
    again = run_cli("train", str(out / "config.yaml"), "overwrite_output_dir=true", "max_steps=1")
    assert again.returncode == 0, again.stderr[-2000:]


def test_adapter_loads_with_plain_peft(tiny_model_dir, alpaca_file, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}", "max_steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": QA[0][0]}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3


def test_broken_line_stops_before_training(tmp_path):
    good = {"instruction": "Q", "output": "A"}
    path = write_jsonl(tmp_path / "broken.jsonl", [good] * 6 + ['{"instruction": "Q", "output": '] + [good] * 3)
    result = run_cli("train", f"dataset={path}", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert f"{path}:7: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_config_errors_are_one_line(tmp_path):
    result = run_cli("train", "dataset=x.jsonl", "learnig_rate=1e-4")
    assert result.returncode == 2 and "did you mean 'learning_rate'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("train", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_hub_names_fail_offline_with_one_line(tmp_path):
    result = run_cli("train", "dataset=someone/no-such-dataset", "model=someone/no-such-model",
                     f"output_dir={tmp_path / 'r'}", env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 2 and "could not load the hub dataset" in result.stderr
    assert "Traceback" not in result.stderr
