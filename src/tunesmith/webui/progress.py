"""Read a run's `trainer_log.jsonl` (format: tunesmith/train/monitor.py) into what the Train and Runs tabs show."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.run import LOG_FILE, TrainLog
from tunesmith.webui.i18n import text


@dataclass
class TrainProgress:
    step: int = 0
    max_steps: int = 0
    eta_s: float | None = None
    elapsed_s: float | None = None
    train: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    warning: str | None = None
    done: bool = False
    stopped_early: bool = False

    @property
    def last_loss(self) -> float | None:
        return self.train[-1][1] if self.train else None

    @property
    def last_eval_loss(self) -> float | None:
        return self.evals[-1][1] if self.evals else None

    @property
    def fraction(self) -> float:
        return min(self.step / self.max_steps, 1.0) if self.max_steps else 0.0


def parse_log(lines: list[str]) -> TrainProgress:
    """Lines that are not complete JSON objects are skipped (TrainLog.parse): the trainer may be writing one now."""
    return progress_of(TrainLog.parse(lines).records)


def progress_of(records: list[dict]) -> TrainProgress:
    p = TrainProgress()
    for rec in records:
        if isinstance(rec.get("step"), int):
            p.step = max(p.step, rec["step"])
        p.max_steps = rec.get("max_steps") or p.max_steps
        if "loss" in rec:
            p.train.append((rec["step"], rec["loss"]))
            p.eta_s = rec.get("eta_s")
            p.elapsed_s = rec.get("elapsed_s")
        if "eval_loss" in rec:
            p.evals.append((rec["step"], rec["eval_loss"]))
        if "warning" in rec:
            p.warning = rec["warning"]
        if rec.get("done"):
            p.done, p.stopped_early, p.eta_s = True, bool(rec.get("stopped_early")), 0.0
    return p


def read_log(run_dir: str | Path, newer_than: float | None = None) -> TrainProgress:
    """The run's progress (its `TrainLog`); an empty one when there is no log yet, or only one older than
    `newer_than` (a previous run's log that the starting trainer has not replaced yet)."""
    path = Path(run_dir) / LOG_FILE
    try:
        if newer_than is not None and path.stat().st_mtime < newer_than:
            return TrainProgress()
    except FileNotFoundError:
        return TrainProgress()
    return progress_of(TrainLog.read(run_dir).records)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def loss_frame(p: TrainProgress, lang: str):
    """Rows for the loss chart: one series for train loss, one for eval loss."""
    import pandas as pd

    train, evals = text(lang, "train.series_train"), text(lang, "train.series_eval")
    rows = [{"step": s, "loss": v, "series": train} for s, v in p.train]
    rows += [{"step": s, "loss": v, "series": evals} for s, v in p.evals]
    # explicit dtypes: an empty frame would otherwise make the chart treat steps as categories
    return pd.DataFrame(rows, columns=["step", "loss", "series"]).astype({"step": "int64", "loss": "float64"})


def progress_html(p: TrainProgress, lang: str, state: str) -> str:
    """A progress bar with step, ETA and the latest losses; `state` is a strings key (train.state_*)."""
    percent = round(100 * (1.0 if p.done else p.fraction))
    facts = [text(lang, state), text(lang, "train.progress_step", step=p.step, total=p.max_steps or "?")]
    if p.last_loss is not None:
        facts.append(text(lang, "train.progress_loss", loss=f"{p.last_loss:.4f}"))
    if p.last_eval_loss is not None:
        facts.append(text(lang, "train.progress_eval_loss", loss=f"{p.last_eval_loss:.4f}"))
    facts.append(text(lang, "train.progress_elapsed", time=format_duration(p.elapsed_s)))
    if not p.done:
        facts.append(text(lang, "train.progress_eta", time=format_duration(p.eta_s)))
    warning = f'<div class="ts-warning">{html.escape(p.warning)}</div>' if p.warning else ""
    return (f'<div class="ts-progress" data-step="{p.step}" data-max-steps="{p.max_steps}">'
            f'<div class="ts-bar"><div class="ts-fill" style="width:{percent}%"></div></div>'
            f'<div class="ts-facts">{html.escape(" · ".join(facts))}</div>{warning}</div>')
