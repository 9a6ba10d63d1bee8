"""`tunesmith sweep CONFIG key=v1,v2,... [key=value ...]`: short training runs over a grid of settings, ranked by
final eval loss.

- A value with commas is swept (`learning_rate=1e-4,5e-4,1e-3`); several swept keys make a grid (every
  combination). Keys whose one value is already a comma list (lora_target, freeze_modules) are swept with `;`
  (`lora_target="q_proj,v_proj;all-linear"`); any value with `;` is split on `;` only. Other overrides apply to every
  run: set the short length there (`max_steps=30`).
- Every run's config is built and checked before the first one starts, and so is the validation data: runs are
  ranked by eval loss, so a config without val_size or val_dataset is refused.
- Run k trains into OUTPUT_DIR/<key-value[_key-value]> (OUTPUT_DIR = the config's output_dir) through `train()`,
  the function `tunesmith train` calls, so a sweep run is exactly a normal run: same logs, loss.png, adapter.
- OUTPUT_DIR gets `sweep_results.json`, `sweep.png` (each run's eval loss over steps, train loss faint) and
  `best.yaml`: the best run's config with output_dir=OUTPUT_DIR/best, for `tunesmith train OUTPUT_DIR/best.yaml`.

The runs go one after another in this process rather than as subprocesses: sweep runs are short by design, and
starting Python, torch and transformers again for each would cost seconds per run, a large share of a short run on a
CPU. Runs do not leak into each other: `train()` seeds everything from the config at its start, builds its own
model, optimizer and data, and what it held is freed (gc, CUDA cache) before the next run. A run that runs out of
memory is recorded as failed and the sweep goes on (a grid over batch sizes may hit that).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tunesmith.config import TrainConfig, load_config
from tunesmith.errors import ConfigError
from tunesmith.run import is_run
from tunesmith.train.loop import train

log = logging.getLogger("tunesmith")
COMMA_VALUE_KEYS = ("lora_target", "freeze_modules")


@dataclass
class PlannedRun:
    name: str
    settings: dict[str, str]  # swept key -> the value as typed
    cfg: TrainConfig


@dataclass
class SweepPlan:
    config: str | None
    root: Path
    swept: dict[str, list[str]]
    fixed: list[str]
    runs: list[PlannedRun]


def split_overrides(overrides: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Swept keys with their values, and the key=value overrides shared by every run."""
    swept: dict[str, list[str]] = {}
    fixed: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if sep and raw[:1] not in ("[", "{") and (";" in raw or ("," in raw and key not in COMMA_VALUE_KEYS)):
            values = [v.strip() for v in raw.split(";" if ";" in raw else ",")]
            if not all(values):
                raise ConfigError(f"sweep: '{item}' has an empty value; write key=v1,v2,... without empty entries")
            if len(set(values)) != len(values):
                raise ConfigError(f"sweep: '{item}' repeats a value; list each value once")
            if key in swept:
                raise ConfigError(f"sweep: '{key}' is swept twice; give all its values in one key=v1,v2,...")
            if key == "output_dir":
                raise ConfigError("sweep: output_dir cannot be swept; each run gets OUTPUT_DIR/<key-value>")
            swept[key] = values
        else:
            fixed.append(item)
    if not swept:
        raise ConfigError("sweep: nothing to sweep; give a key with several values, e.g. "
                          "learning_rate=1e-4,5e-4,1e-3")
    return swept, fixed


def _folder_name(settings: dict[str, str]) -> str:
    return "_".join(f"{key}-{re.sub(r'[^A-Za-z0-9.+-]+', '_', value).strip('_')}" for key, value in settings.items())


def plan_sweep(config: str | None, overrides: list[str]) -> SweepPlan:
    swept, fixed = split_overrides(overrides)
    base = load_config(config, fixed)
    if not base.val_dataset and not base.val_size:
        raise ConfigError("sweep: runs are ranked by eval loss, but this config has no validation data; add "
                          "val_size=0.1 (a share of dataset) or val_dataset=FILE")
    root = Path(base.output_dir)
    runs, names = [], set()
    for combo in itertools.product(*swept.values()):
        settings = dict(zip(swept, combo))
        name = _folder_name(settings)
        if name in names:
            name = f"{name}_{len(runs) + 1}"
        names.add(name)
        run_overrides = [*fixed, *(f"{k}={v}" for k, v in settings.items()), f"output_dir={root / name}"]
        cfg = load_config(config, run_overrides)  # every value is checked before the first run starts
        if is_run(root / name) and not cfg.resume and not cfg.overwrite_output_dir:
            raise ConfigError(f"sweep: {root / name} already holds a run; add overwrite_output_dir=true to redo "
                              "the sweep, or pick another output_dir")
        runs.append(PlannedRun(name, settings, cfg))
    return SweepPlan(config, root, swept, fixed, runs)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_sweep(plan: SweepPlan, show_progress: bool = True) -> dict:
    records = []
    for k, run in enumerate(plan.runs, 1):
        log.info("sweep run %d of %d: %s", k, len(plan.runs), ", ".join(f"{a}={b}" for a, b in run.settings.items()))
        record = {"name": run.name, "dir": str(run.cfg.output_dir), "settings": run.settings, "status": "done",
                  "final_eval_loss": None, "first_eval_loss": None, "final_train_loss": None, "steps": 0,
                  "runtime_s": None, "eval_losses": [], "train_losses": []}
        started = time.time()
        try:
            result = train(run.cfg, show_progress)
        except torch.OutOfMemoryError:
            record["status"] = "out of memory"
            log.warning("sweep run %s ran out of memory; going on with the next run", run.name)
        else:
            evals = [[step, loss] for step, loss in result.eval_losses]
            record.update(final_eval_loss=evals[-1][1] if evals else None, first_eval_loss=evals[0][1] if evals
                          else None, final_train_loss=result.train_loss, steps=result.steps, eval_losses=evals,
                          train_losses=[[i + 1, loss] for i, loss in enumerate(result.losses)])
        finally:
            _free_memory()
        record["runtime_s"] = round(time.time() - started, 2)
        records.append(record)
    ranked = sorted(records, key=lambda r: (r["final_eval_loss"] is None, r["final_eval_loss"] or 0.0))
    for rank, record in enumerate(ranked, 1):
        record["rank"] = rank if record["final_eval_loss"] is not None else None
    plan.root.mkdir(parents=True, exist_ok=True)
    results = {"config": plan.config, "output_dir": str(plan.root), "swept": plan.swept, "fixed": plan.fixed,
               "ranked_by": "final eval loss (lower is better)", "runs": ranked, "best": None,
               "plot": str(plan.root / "sweep.png")}
    best = ranked[0] if ranked and ranked[0]["rank"] == 1 else None
    if best is not None:
        best_run = next(r for r in plan.runs if r.name == best["name"])
        results["best"] = {"name": best["name"], "dir": best["dir"], "final_eval_loss": best["final_eval_loss"],
                           "config": str(plan.root / "best.yaml")}
        write_best_config(best_run.cfg, best, plan.root)
    plot_sweep(ranked, plan.root / "sweep.png")
    (plan.root / "sweep_results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return results


def write_best_config(cfg: TrainConfig, best: dict, root: Path) -> Path:
    """The winner's resolved config, aimed at a fresh folder so `tunesmith train` does not refuse its output_dir."""
    path = root / "best.yaml"
    settings = ", ".join(f"{k}={v}" for k, v in best["settings"].items())
    header = (f"# Best run of `tunesmith sweep` in {root}: {settings} (final eval loss {best['final_eval_loss']:.4f} "
              f"after {best['steps']} steps).\n# It keeps the sweep's short-run settings; override them for the full "
              f"run, e.g.\n#   tunesmith train {path} max_steps=0\n")
    chosen = dataclasses.replace(cfg, output_dir=str(root / "best"))
    path.write_text(header + yaml.safe_dump(chosen.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def plot_sweep(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        label = ", ".join(f"{k}={v}" for k, v in run["settings"].items())
        if run["eval_losses"]:
            ax.plot(*zip(*run["eval_losses"]), marker="o", color=color,
                    label=f"#{run['rank']} {label}: {run['final_eval_loss']:.4f}")
        if run["train_losses"]:
            ax.plot(*zip(*run["train_losses"]), color=color, alpha=0.3, linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (eval: dots; train: faint)")
    ax.set_title("sweep: eval loss per run (legend: rank, settings, final eval loss)")
    ax.grid(alpha=0.3)
    if any(run["eval_losses"] for run in runs):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_sweep_table(results: dict) -> str:
    rows = [["rank", "run", "final eval loss", "eval loss step 0", "final train loss", "steps", "time"]]
    for run in results["runs"]:
        def number(value: float | None) -> str:
            return f"{value:.4f}" if value is not None else "-"

        rows.append([str(run["rank"] or "-"), ", ".join(f"{k}={v}" for k, v in run["settings"].items()),
                     number(run["final_eval_loss"]) if run["status"] == "done" else run["status"],
                     number(run["first_eval_loss"]), number(run["final_train_loss"]), str(run["steps"]),
                     f"{run['runtime_s']:.0f} s"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
