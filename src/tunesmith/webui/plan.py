"""What pressing Start will do, shown before it is pressed: training rows, optimizer steps, and a rough time.

Rows come from the training data loader itself (`load_items`: the CLI's reading, checking and validation split of
the config's data); steps are the trainer's arithmetic on them (`max_steps`, else `num_epochs` over the rows in
steps of `per_device_batch_size x gradient_accumulation_steps`). The time is only an estimate from a measured
speed: the newest finished run of the same model and method in this workspace, or else tunesmith's own
measurement of the embedded model on a 2-core CPU (BENCHMARKS.md). Other models get no time until they ran once.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunesmith.config import TrainConfig
from tunesmith.data.dataset import DataSpec, load_items
from tunesmith.webui.i18n import text
from tunesmith.webui.runs import FINISHED, list_runs
from tunesmith.webui.workspace import is_hub_name

# Training samples per second of the embedded SmolLM2-135M on a 2-core CPU, quickstart data (BENCHMARKS.md).
REFERENCE_SAMPLES_PER_S = {"full": 1.37, "freeze": 4.26, "lora": 1.88, "dora": 1.49, "qlora": 1.74}
EVAL_ROW_COST = 1 / 3  # an evaluation row is a forward pass only: about a third of a training row
START_UP_S = 20.0  # starting Python, loading the model and the data


@dataclass
class RunPlan:
    rows: int
    val_rows: int
    rows_per_step: int
    steps: int
    epochs: float
    documents: bool  # stage=pt: rows are documents, which training cuts into cutoff_len pieces (more rows)
    seconds: float | None = None
    speed_from: str | None = None  # the run whose speed the estimate uses; None = the built-in reference


def count_steps(rows: int, cfg: TrainConfig) -> int:
    steps_per_epoch = math.ceil(rows / cfg.rows_per_step)
    return cfg.max_steps or math.ceil(cfg.num_epochs * steps_per_epoch)


def evaluations(steps: int, cfg: TrainConfig) -> int:
    """At the start, every eval_steps before the last step, and at the end."""
    return 2 + ((steps - 1) // cfg.eval_steps if cfg.eval_steps else 0)


def measured_speed(root: Path, cfg: TrainConfig) -> tuple[float, str] | None:
    """Samples/s of the newest finished run in `root` that trained the same model with the same method."""
    for run in list_runs(root):
        if run.status != FINISHED:
            continue
        try:
            saved = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8")) or {}
            done = json.loads((run.path / "trainer_log.jsonl").read_text(encoding="utf-8").splitlines()[-1])
        except (OSError, ValueError, IndexError, yaml.YAMLError):
            continue
        speed = done.get("samples_per_s") if isinstance(done, dict) else None
        same = isinstance(saved, dict) and saved.get("model") == cfg.model and saved.get("method") == cfg.method
        if same and isinstance(speed, (int, float)) and speed > 0:
            return float(speed), run.name
    return None


def plan_run(cfg: TrainConfig, root: Path) -> RunPlan | None:
    """The plan for `cfg` (its paths already confined to the workspace `root`); None when the rows are only known
    once training downloads them (a hub dataset: counting them here would download it on every change)."""
    sources = [cfg.dataset] if isinstance(cfg.dataset, str) else list(cfg.dataset or [])
    if any(is_hub_name(source) and not Path(source).exists() for source in sources):
        return None
    splits = load_items(DataSpec.from_settings(cfg))
    rows, val_rows = len(splits.train), len(splits.val)
    steps = count_steps(rows, cfg)
    epochs = steps * cfg.rows_per_step / max(rows, 1) if cfg.max_steps else cfg.num_epochs
    plan = RunPlan(rows, val_rows, cfg.rows_per_step, steps, epochs, documents=cfg.stage == "pt")
    measured = measured_speed(root, cfg)
    if measured is not None:
        speed, plan.speed_from = measured
    elif cfg.model is None and cfg.method in REFERENCE_SAMPLES_PER_S:
        speed = REFERENCE_SAMPLES_PER_S[cfg.method]
    else:
        return plan
    eval_rows = evaluations(steps, cfg) * val_rows * EVAL_ROW_COST
    plan.seconds = START_UP_S + (steps * cfg.rows_per_step + eval_rows) / speed
    return plan


def about(seconds: float, lang: str) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return text(lang, "plan.under_a_minute")
    hours, minutes = divmod(minutes, 60)
    return text(lang, "plan.hours", hours=hours, minutes=minutes) if hours else text(lang, "plan.minutes",
                                                                                     minutes=minutes)


def plan_html(plan: RunPlan | None, lang: str) -> str:
    if plan is None:
        return _box(text(lang, "plan.title"), [text(lang, "plan.hub")], "")
    facts = [text(lang, "plan.rows", rows=plan.rows, val_rows=plan.val_rows),
             text(lang, "plan.steps", steps=plan.steps, rows_per_step=plan.rows_per_step,
                  epochs=f"{plan.epochs:.3g}")]
    if plan.documents:
        facts.append(text(lang, "plan.documents"))
    if plan.seconds is None:
        facts.append(text(lang, "plan.no_estimate"))
    else:
        basis = (text(lang, "plan.basis_run", run=plan.speed_from) if plan.speed_from
                 else text(lang, "plan.basis_reference"))
        facts.append(text(lang, "plan.estimate", time=about(plan.seconds, lang), basis=basis))
    return _box(text(lang, "plan.title"), facts, f' data-rows="{plan.rows}" data-steps="{plan.steps}"')


def _box(title: str, facts: list[str], attributes: str) -> str:
    items = "".join(f"<li>{html.escape(fact)}</li>" for fact in facts)
    return f'<div class="ts-plan"{attributes}><strong>{html.escape(title)}</strong><ul>{items}</ul></div>'

