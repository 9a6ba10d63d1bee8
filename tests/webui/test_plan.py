"""What Start will do, before it is pressed: rows and steps as training counts them, and a time labelled as an
estimate."""

from __future__ import annotations

import json

from tests.conftest import QA, write_jsonl
from tunesmith.config import load_config
from tunesmith.webui.plan import plan_html, plan_run
from tunesmith.webui.workspace import Workspace


def quickstart(ws: Workspace, *overrides: str):
    return ws.confine_config(load_config(ws.quickstart, list(overrides)))


def test_the_quickstart_plan_counts_what_training_counts(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.prepare()
    plan = plan_run(quickstart(ws), ws.root)
    # 310 rows, val_size 0.1 -> 31 held out; 279 rows in steps of 4 x 2 = 35 steps per epoch, 3 epochs
    assert (plan.rows, plan.val_rows, plan.rows_per_step, plan.steps) == (279, 31, 8, 105)
    assert plan.speed_from is None and 4 * 60 < plan.seconds < 15 * 60  # the 2-core CPU reference: minutes
    shown = plan_html(plan, "en")
    assert "279 rows" in shown and "105 steps of 8 rows (3 epochs)" in shown
    assert "estimated time: about" in shown and "estimate" in shown.split("about", 1)[1]
    assert "105" in plan_html(plan, "ko") and "예상 시간" in plan_html(plan, "ko")
    short = plan_run(quickstart(ws, "max_steps=2"), ws.root)
    assert short.steps == 2 and short.seconds < plan.seconds


def test_a_run_of_the_same_model_in_the_workspace_gives_the_speed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.prepare()
    run = ws.root / "earlier"
    run.mkdir()
    (run / "config.yaml").write_text("model: null\nmethod: lora\n")
    (run / "trainer_log.jsonl").write_text(json.dumps({"step": 5, "done": True, "samples_per_s": 100.0}) + "\n")
    plan = plan_run(quickstart(ws), ws.root)
    assert plan.speed_from == "earlier" and plan.seconds < 60
    assert "the run earlier" in plan_html(plan, "en")


def test_other_models_and_hub_data_say_what_is_not_known_yet(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.prepare()
    write_jsonl(ws.root / "faq.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    plan = plan_run(ws.confine_config(load_config(None, ["dataset=faq.jsonl", "model=some/model"])), ws.root)
    assert (plan.rows, plan.steps, plan.seconds) == (6, 3, None)  # 6 rows / 16 per step = 1 step x 3 epochs
    assert "unknown until this model has trained once" in plan_html(plan, "en")
    hub = plan_run(ws.confine_config(load_config(None, ["dataset=someone/faq"])), ws.root)
    assert hub is None and "counted when training starts" in plan_html(hub, "en")
