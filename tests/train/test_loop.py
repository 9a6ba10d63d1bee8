import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.train.loop import Diverged, rows_for_step, train
from tunesmith.train.monitor import Monitor


def test_each_epoch_visits_every_row_once_in_fixed_size_steps():
    steps = [rows_for_step(10, 4, s, seed=1) for s in range(3)]
    assert [len(s) for s in steps] == [4, 4, 2]
    assert sorted(sum(steps, [])) == list(range(10))
    assert rows_for_step(10, 4, 3, seed=1) != steps[0]  # a new epoch reshuffles
    assert rows_for_step(10, 4, 0, seed=1) == steps[0]  # the position is a pure function of the step


def test_early_stopping_keeps_the_best_evaluations_weights(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "r"
    cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}",
                             "max_steps=30", "eval_steps=1", "val_size=4", "learning_rate=1.0", "lr_scheduler=constant",
                             "optimizer=sgd", "max_grad_norm=0", "early_stopping_patience=2", "save_steps=1",
                             "save_total_limit=0"])
    result = train(cfg, show_progress=False)
    assert result.stopped_early and result.steps < 30
    done = json.loads((out / "trainer_log.jsonl").read_text().splitlines()[-1])
    evals = {r["step"]: r["eval_loss"] for r in map(json.loads, (out / "trainer_log.jsonl").read_text().splitlines())
             if "eval_loss" in r}
    best = min(evals, key=evals.get)
    assert 0 < best < result.steps, evals  # improved, then got worse: the interesting case
    assert done["weights_step"] == done["best_step"] == best == result.weights_step
    saved = load_file(out / "adapter_model.safetensors")
    at_best = load_file(out / "checkpoints" / f"step-{best}" / "adapter_model.safetensors")
    at_end = load_file(out / "checkpoints" / f"step-{result.steps - 1}" / "adapter_model.safetensors")
    assert saved.keys() == at_best.keys()
    assert all(torch.equal(saved[k], at_best[k]) for k in saved)
    assert not all(torch.equal(saved[k], at_end[k]) for k in saved)
    assert not (out / "checkpoints" / "best.safetensors").exists()  # the snapshot is gone once the run holds it


def test_non_finite_loss_stops_the_run_before_the_weights(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "r"
    cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}",
                             "max_steps=20", "learning_rate=1e30", "optimizer=sgd", "max_grad_norm=0",
                             "lr_scheduler=constant", "method=full"])
    with pytest.raises(Diverged, match=r"step \d+: the (loss|gradient norm) is (nan|inf).*lower learning_rate "
                                       r"\(now 1e\+30\) and turn gradient clipping on"):
        train(cfg, show_progress=False)
    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]  # strict JSON
    assert not any(r.get("done") for r in records)
    assert all(math.isfinite(v) for r in records for v in r.values() if isinstance(v, float))


def test_unfilled_placeholders_are_never_trained_on_in_silence(tiny_model_dir, tmp_path, caplog):
    rows = [{"instruction": f"Who are you? ({i})", "output": "I am {{name}}, made by {{author}}."} for i in range(3)]
    data = tmp_path / "identity.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={tmp_path / 'r'}",
                             "max_steps=1"])
    with caplog.at_level("WARNING", logger="tunesmith"):
        train(cfg, show_progress=False)
    assert "3 training rows have unfilled placeholders in their answers ({{name}}, {{author}})" in caplog.text


@pytest.mark.parametrize("losses, warns", [([2.0, 2.4, 3.6], True), ([2.0, 1.5, 1.2, 1.3, 1.1], False),
                                           ([0.2, 0.25, 0.3], False)])
def test_divergence_warning(tmp_path, caplog, losses, warns):
    monitor = Monitor(tmp_path, max_steps=10, enabled=True, progress=False)
    metrics = {"lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 1.0, "samples_per_s": 1.0}
    for step, loss in enumerate(losses, 1):
        monitor.step(step, {**metrics, "loss": loss})
    monitor.finish({"step": len(losses)})
    assert ("diverging; lower learning_rate" in caplog.text) == warns
    lines = [json.loads(x) for x in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert any("diverging" in r.get("warning", "") for r in lines) == warns


def test_overfitting_warning(tmp_path, caplog):
    monitor = Monitor(tmp_path, max_steps=10, enabled=True)
    metrics = {"loss": 0.0, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 1.0, "samples_per_s": 1.0}
    for step, (train_loss, eval_loss) in enumerate([(2.0, 1.0), (1.5, 1.1), (1.0, 1.2), (0.5, 1.3)], 1):
        monitor.step(step, {**metrics, "loss": train_loss})
        monitor.evaluation(step, eval_loss)
    monitor.finish({"step": 4})
    lines = [json.loads(x) for x in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert any("overfitting" in r.get("warning", "") for r in lines)
    assert "overfitting" in caplog.text
    assert (tmp_path / "loss.png").stat().st_size > 0


@pytest.mark.parametrize("optimizer", ["adamw_8bit"])
def test_seed_recipe_optimizer_and_scheduler(tiny_model_dir, alpaca_file, tmp_path, optimizer):
    cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={tmp_path / 'r'}",
                             "max_steps=3", f"optimizer={optimizer}", "lr_scheduler=constant_with_warmup",
                             "warmup_steps=2", "weight_decay=0.01", "gradient_checkpointing=true"])
    result = train(cfg, show_progress=False)
    assert result.steps == 3 and all(loss == loss for loss in result.losses)
