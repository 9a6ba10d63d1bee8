import json

import pytest

from tunesmith.config import load_config
from tunesmith.train.loop import rows_for_step, train
from tunesmith.train.monitor import Monitor


def test_each_epoch_visits_every_row_once_in_fixed_size_steps():
    steps = [rows_for_step(10, 4, s, seed=1) for s in range(3)]
    assert [len(s) for s in steps] == [4, 4, 2]
    assert sorted(sum(steps, [])) == list(range(10))
    assert rows_for_step(10, 4, 3, seed=1) != steps[0]  # a new epoch reshuffles
    assert rows_for_step(10, 4, 0, seed=1) == steps[0]  # the position is a pure function of the step


def test_early_stopping_on_rising_eval_loss(tiny_model_dir, alpaca_file, tmp_path):
    cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={tmp_path / 'r'}",
                             "max_steps=30", "eval_steps=1", "val_size=4", "learning_rate=3.0", "lr_scheduler=constant",
                             "optimizer=sgd", "max_grad_norm=0", "early_stopping_patience=2"])
    result = train(cfg, show_progress=False)
    assert result.stopped_early and result.steps < 30


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
