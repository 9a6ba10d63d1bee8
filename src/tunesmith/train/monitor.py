"""What a person watches while a run trains: a progress bar, `trainer_log.jsonl`, TensorBoard, `loss.png`.

`trainer_log.jsonl` (read by the Web UI and by anyone's scripts; tunesmith reads it through `tunesmith.run`) has one
strict-JSON object per line:
- train lines: {"step", "max_steps", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s",
  "elapsed_s", "eta_s"}, plus the stage's metrics; `loss` is the mean over the logging window.
- eval lines:  {"step", "max_steps", "eval_loss", "eval_<metric>"..., "elapsed_s"}.
- warnings:    {"step", "warning"} (overfitting, diverging).
- a final line: {"step", "max_steps", "done": true, "stopped_early", "weights_step", "best_step"?, "best_loss"?,
  "train_runtime_s", ...}: the run's finished marker, written after its result is on disk.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tunesmith.run import LOG_FILE, PLOT_FILE, TrainLog

log = logging.getLogger(__name__)
OVERFIT_EVALS = 3  # eval loss rising this many times in a row while train loss falls -> warn
# Train loss at least DIVERGE_FACTOR times its first logged value (and DIVERGE_MIN_RISE nats above it), seen after
# DIVERGE_AFTER logged points -> warn that training diverges. Noise on a falling curve never comes close.
DIVERGE_FACTOR, DIVERGE_MIN_RISE, DIVERGE_AFTER = 1.5, 0.5, 3


class Monitor:
    def __init__(self, output_dir: Path, max_steps: int, start_step: int = 0, enabled: bool = True,
                 progress: bool = True):
        """`enabled`: write logs and plots (the main process only); `progress`: draw the progress bar."""
        self.output_dir = output_dir
        self.max_steps = max_steps
        self.enabled = enabled
        self.start = time.time()
        self.start_step = start_step
        self.train_points: list[tuple[int, float]] = []
        self.eval_points: list[tuple[int, float]] = []
        self._warned = False
        self._warned_divergence = False
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        self.log_file = (output_dir / LOG_FILE).open("a", encoding="utf-8")
        self.tb = SummaryWriter(str(output_dir / "tensorboard"))
        self.bar = tqdm(total=max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                        disable=not progress)

    def restore(self, history: list[dict[str, Any]]) -> None:
        """Bring back the curves of a resumed run (the jsonl already holds them)."""
        for rec in history:
            if "loss" in rec:
                self.train_points.append((rec["step"], rec["loss"]))
            if "eval_loss" in rec:
                self.eval_points.append((rec["step"], rec["eval_loss"]))

    def _write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self.log_file.write(TrainLog.line(record))
            self.log_file.flush()

    def step(self, step: int, metrics: dict[str, float] | None) -> dict[str, Any] | None:
        """Advance the bar; when `metrics` is given (a logging step) also log them everywhere."""
        if self.enabled:
            self.bar.update(1)
        if metrics is None:
            return None
        elapsed = time.time() - self.start
        done = step - self.start_step
        eta = elapsed / done * (self.max_steps - step) if done else None
        record = {"step": step, "max_steps": self.max_steps, **{k: round(v, 6) for k, v in metrics.items()},
                  "elapsed_s": round(elapsed, 2), "eta_s": round(eta, 1) if eta is not None else None}
        self.train_points.append((step, metrics["loss"]))
        self._write(record)
        self._check_divergence()
        if self.enabled:
            for key, value in metrics.items():
                if key != "epoch":
                    self.tb.add_scalar(f"train/{key}", value, step)
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                                 tok_s=f"{metrics['tokens_per_s']:.0f}")
        return record

    def evaluation(self, step: int, eval_loss: float, extra: dict[str, float] | None = None) -> None:
        self.eval_points.append((step, eval_loss))
        self._write({"step": step, "max_steps": self.max_steps, "eval_loss": round(eval_loss, 6),
                     **(extra or {}), "elapsed_s": round(time.time() - self.start, 2)})
        if self.enabled:
            self.tb.add_scalar("eval/loss", eval_loss, step)
            for key, value in (extra or {}).items():
                self.tb.add_scalar(f"eval/{key.removeprefix('eval_')}", value, step)
            self.bar.write(f"step {step}: eval_loss {eval_loss:.4f}")
        self._check_overfitting()

    def _check_divergence(self) -> None:
        """Warn once when the train loss climbs well above where it started: the learning rate is too high."""
        if self._warned_divergence or len(self.train_points) < DIVERGE_AFTER:
            return
        (first_step, first), (step, loss) = self.train_points[0], self.train_points[-1]
        if loss > DIVERGE_FACTOR * first and loss - first > DIVERGE_MIN_RISE:
            self._warned_divergence = True
            msg = (f"train loss rose from {first:.4f} (step {first_step}) to {loss:.4f} (step {step}): training is "
                   "diverging; lower learning_rate (or warm it up with warmup_steps)")
            log.warning(msg)
            self._write({"step": step, "warning": msg})

    def _check_overfitting(self) -> None:
        evals = [loss for _, loss in self.eval_points[-(OVERFIT_EVALS + 1):]]
        if self._warned or len(evals) <= OVERFIT_EVALS or len(self.train_points) < 2:
            return
        rising = all(b > a for a, b in zip(evals, evals[1:]))
        first_step = self.eval_points[-(OVERFIT_EVALS + 1)][0]
        window = [loss for step, loss in self.train_points if step >= first_step]
        if rising and len(window) >= 2 and window[-1] < window[0]:
            self._warned = True
            msg = (f"eval loss rose {OVERFIT_EVALS} evaluations in a row while train loss fell: the model is "
                   "overfitting; use an earlier checkpoint, fewer steps, a lower learning rate or more data")
            log.warning(msg)
            self._write({"step": self.eval_points[-1][0], "warning": msg})

    def finish(self, record: dict[str, Any]) -> None:
        """The run's finished marker (see tunesmith/run.py): written only once its result is on disk."""
        self._write({"step": record.get("step"), "max_steps": self.max_steps, "done": True, **record})
        self.close()

    def close(self) -> None:
        """End the bar on its own line (an error message must not share it), flush the logs, draw the plot."""
        if self.enabled and not self.log_file.closed:
            self.bar.close()
            self.tb.close()
            self.log_file.close()
            plot_losses(self.train_points, self.eval_points, self.output_dir / PLOT_FILE)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plot_losses(train: list[tuple[int, float]], evals: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4", alpha=0.8)
    if evals:
        ax.plot(*zip(*evals), label="eval loss", color="#d62728", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
