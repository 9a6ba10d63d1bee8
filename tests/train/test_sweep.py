"""`tunesmith sweep`: 2 learning rates x 2 steps on the tiny model, ranked by eval loss; and the checks that stop a
sweep before its first run."""

import json

import pytest

from tests.conftest import run_cli
from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.train.sweep import plan_sweep, split_overrides


def test_sweep_two_learning_rates(tiny_model_dir, alpaca_file, tmp_path):
    root = tmp_path / "sweep"
    r = run_cli("sweep", f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={root}", "val_size=4",
                "max_steps=2", "per_device_batch_size=2", "gradient_accumulation_steps=1", "device=cpu",
                "learning_rate=1e-5,2e-2")
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((root / "sweep_results.json").read_text())
    runs = results["runs"]
    assert results["swept"] == {"learning_rate": ["1e-5", "2e-2"]}
    assert {run["name"] for run in runs} == {"learning_rate-1e-5", "learning_rate-2e-2"}
    losses = [run["final_eval_loss"] for run in runs]
    assert [run["rank"] for run in runs] == [1, 2] and losses == sorted(losses)
    for run in runs:
        assert run["steps"] == 2 and [s for s, _ in run["eval_losses"]] == [0, 2]
        assert (root / run["name"] / "adapter_model.safetensors").exists()  # a normal run directory
        assert (root / run["name"] / "trainer_log.jsonl").exists()
    best = runs[0]
    # the printed table: header, rule, one line per run in rank order
    lines = r.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("rank")))
    assert lines[header + 2].split()[:3] == ["1", f"learning_rate={best['settings']['learning_rate']}",
                                             f"{best['final_eval_loss']:.4f}"]
    assert lines[header + 3].split()[0] == "2"
    assert f"best:    {best['name']}" in r.stdout
    assert (root / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = load_config(root / "best.yaml")  # `tunesmith train best.yaml` reads it the same way
    assert cfg.learning_rate == float(best["settings"]["learning_rate"])
    assert cfg.output_dir == str(root / "best") and cfg.max_steps == 2 and cfg.model == str(tiny_model_dir)


def test_overrides_split_into_swept_and_fixed():
    swept, fixed = split_overrides(["learning_rate=1e-4,5e-4", "lora_rank=8, 16", "max_steps=30",
                                    "lora_target=q_proj,v_proj", "freeze_modules=lm_head;lm_head,norm",
                                    "columns={instruction: q, output: a}"])
    assert swept == {"learning_rate": ["1e-4", "5e-4"], "lora_rank": ["8", "16"],
                     "freeze_modules": ["lm_head", "lm_head,norm"]}
    assert fixed == ["max_steps=30", "lora_target=q_proj,v_proj", "columns={instruction: q, output: a}"]


@pytest.mark.parametrize("overrides, message", [
    (["learning_rate=1e-4"], "nothing to sweep"),
    (["learning_rate=1e-4,,1e-3"], "has an empty value"),
    (["learning_rate=1e-4,1e-4"], "repeats a value"),
    (["output_dir=a,b"], "output_dir cannot be swept"),
])
def test_bad_sweeps_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        split_overrides(overrides)


def test_a_grid_is_planned_and_checked_before_any_run(alpaca_file, tmp_path):
    base = [f"dataset={alpaca_file}", f"output_dir={tmp_path / 'grid'}", "max_steps=2"]
    with pytest.raises(ConfigError, match="ranked by eval loss, but this config has no validation data; add val_size"):
        plan_sweep(None, [*base, "learning_rate=1e-4,1e-3"])
    plan = plan_sweep(None, [*base, "val_size=4", "learning_rate=1e-4,1e-3", "lora_rank=4,8"])
    assert [run.name for run in plan.runs] == ["learning_rate-1e-4_lora_rank-4", "learning_rate-1e-4_lora_rank-8",
                                               "learning_rate-1e-3_lora_rank-4", "learning_rate-1e-3_lora_rank-8"]
    assert plan.runs[3].cfg.learning_rate == 1e-3 and plan.runs[3].cfg.lora_rank == 8
    assert plan.runs[3].cfg.output_dir == str(tmp_path / "grid" / "learning_rate-1e-3_lora_rank-8")
    with pytest.raises(ConfigError, match="learning_rate: expected a number"):  # a bad value stops all runs
        plan_sweep(None, [*base, "val_size=4", "learning_rate=1e-4,fast"])
    (tmp_path / "grid" / "learning_rate-1e-4").mkdir(parents=True)
    (tmp_path / "grid" / "learning_rate-1e-4" / "trainer_log.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="already holds a run; add overwrite_output_dir=true"):
        plan_sweep(None, [*base, "val_size=4", "learning_rate=1e-4,1e-3"])
