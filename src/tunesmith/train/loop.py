"""The one training path: `train(cfg) = fit(setup(cfg))`. Every stage and method runs through it.

Reading order: `fit()` top to bottom (`setup.py` builds what it uses). Each optimizer step takes a fixed number of
rows (per_device_batch_size * gradient_accumulation_steps, as the user set), packs them padding-free into as few
micro-batches as the token budget allows, and normalises the summed loss by the step's loss units, which the stage
defines (answer tokens for sft/pt, pairs for rm/dpo). Under torchrun each process takes every world_size-th row of a
step and DDP averages the gradients. A non-finite loss or gradient stops the run before it can reach the weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.config import TrainConfig
from tunesmith.run import CHECKPOINTS, RunError, read_log, rewrite_log
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.best import BestWeights
from tunesmith.train.memory import release_free_memory
from tunesmith.train.monitor import Monitor
from tunesmith.train.setup import TrainingSetup, compile_layers, save_result, setup

__all__ = ["RunResult", "train", "fit", "evaluate", "rows_for_step", "compile_layers"]
log = logging.getLogger(__name__)


@dataclass
class RunResult:
    output_dir: Path
    steps: int
    train_loss: float | None
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per optimizer step
    runtime_s: float = 0.0
    samples_per_s: float = 0.0
    tokens_per_s: float = 0.0
    stopped_early: bool = False
    eval_metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation
    weights_step: int = 0  # the step whose weights the run holds: the last, or the best evaluation's


class Diverged(RunError):
    """The loss or gradient became NaN/inf: stopped before the optimizer could write it into the weights."""


def train(cfg: TrainConfig, show_progress: bool = True) -> RunResult:
    return fit(setup(cfg), show_progress)


def rows_for_step(n_rows: int, rows_per_step: int, step: int, seed: int, shuffle: bool = True) -> list[int]:
    """The rows of optimizer step `step`: a fresh seeded permutation per epoch, so the position is just the step."""
    steps_per_epoch = math.ceil(n_rows / rows_per_step)
    epoch, index = divmod(step, steps_per_epoch)
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(n_rows, generator=generator).tolist() if shuffle else list(range(n_rows))
    return order[index * rows_per_step:(index + 1) * rows_per_step]


def evenly(batches: list, par, filler) -> list[tuple[object, float]]:
    """This process's micro-batches, each with its weight, padded with zero-weight copies of `filler` to the most any
    process has: every process must run the same number of forwards and backwards (FSDP gathers weights in each
    forward, DDP reduces gradients in the last backward), also one whose share of a step is empty."""
    most = int(par.max(len(batches)))
    return [(b, 1.0) for b in batches] + [(filler, 0.0)] * (most - len(batches))


@torch.no_grad()
def evaluate(train_module, batches, par, filler) -> tuple[float, dict[str, float]]:
    """Mean loss over all loss units of the validation set, plus the stage's metrics (e.g. rm accuracy); each
    process scores its share of the micro-batches and the sums are reduced."""
    train_module.eval()
    total, count, metrics = 0.0, 0.0, {}
    for batch, weight in evenly(batches[par.rank::par.world], par, filler):
        out = train_module(batch.to(par.device))
        total += weight * out.loss_sum.item()
        count += weight * out.num_targets
        _accumulate(metrics, out.metrics, weight)  # zero-weight too: every process reduces the same keys
    train_module.train()
    total, count = par.sum(total), par.sum(count)
    return total / max(count, 1), {k: par.sum(v) / max(count, 1) for k, v in sorted(metrics.items())}


def fit(s: TrainingSetup, show_progress: bool = True) -> RunResult:
    """Train from `s.state.step` to `s.max_steps` (or an early stop) and save the run."""
    history = _trim_log(s.out, s.state.step) if s.resumed_from is not None and s.par.is_main else []
    with Monitor(s.out, s.max_steps, s.state.step, enabled=s.par.is_main, progress=show_progress) as monitor:
        monitor.restore(history)  # the Monitor appends to the trimmed log: trim first
        return _Trainer(s, monitor).run()


class _Trainer:
    def __init__(self, s: TrainingSetup, monitor: Monitor):
        self.s, self.cfg, self.state, self.monitor, self.par = s, s.cfg, s.state, monitor, s.par
        self.is_main = s.par.is_main
        # A zero-weight stand-in for a process with fewer micro-batches than the others (see `evenly`).
        self.filler = s.stage.batches(s.train_examples[:1], s.plan.token_budget, s.packed)[0]
        self.best = BestWeights(s.out / CHECKPOINTS, enabled=self.cfg.load_best or self.cfg.early_stopping_patience > 0)
        if s.resumed_from is not None and not self.best.restore_from(s.resumed_from, self.state.best_step):
            self.state.best_eval = self.state.best_step = None  # no snapshot of that best: track from here on
        self.result = RunResult(s.out, s.max_steps, None)
        self.totals = _Window()  # the whole run, for the final throughput

    def run(self) -> RunResult:
        s, cfg, state = self.s, self.cfg, self.state
        if state.step == 0:
            self.evaluate(0)
        s.train_module.train()
        window = _Window()
        release_free_memory(s.device)
        while state.step < s.max_steps:
            started = time.time()
            loss, units, grad_norm = self.train_step(state.step, window)
            state.step += 1
            window.seconds += time.time() - started  # training time only: evals and saves are not counted
            window.loss += loss * units
            window.units += units
            self.result.losses.append(loss)
            logged = None
            if state.step % cfg.logging_steps == 0 or state.step == s.max_steps:
                logged, window = self.window_metrics(window, grad_norm), _Window()
            self.monitor.step(state.step, logged)
            if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < s.max_steps:
                self.evaluate(state.step)  # every process sees the same reduced loss: they stop together
                if cfg.early_stopping_patience and state.bad_evals >= cfg.early_stopping_patience:
                    log.warning("early stopping at step %d: eval loss has not improved for %d evaluations",
                                state.step, cfg.early_stopping_patience)
                    self.result.stopped_early = True
                    break
            if cfg.save_steps and state.step % cfg.save_steps == 0 and state.step < s.max_steps:
                self.save_checkpoint()
        if not self.result.stopped_early:  # an early stop has just evaluated this step
            self.evaluate(state.step)
        return self.finish()

    def train_step(self, step: int, window: "_Window") -> tuple[float, float, float]:
        """One optimizer step over this process's share of the step's rows: (mean loss, loss units, grad norm)."""
        s, par = self.s, self.par
        rows = rows_for_step(len(s.train_examples), self.cfg.rows_per_step, step, self.cfg.seed, self.cfg.shuffle)
        batches = s.stage.batches([s.train_examples[i] for i in rows[par.rank::par.world]], s.plan.token_budget,
                                  s.packed)
        units = par.sum(sum(s.stage.loss_units(b) for b in batches))
        planned = evenly(batches, par, self.filler)
        loss_sum = 0.0
        for i, (batch, weight) in enumerate(planned):
            batch = batch.to(s.device)
            with par.gradient_sync(s.train_module, sync=i == len(planned) - 1):
                output = s.train_module(batch)
                # Data-parallel gradients are averaged over processes: scale by world for the mean over all units.
                loss = output.loss_sum * (weight * par.world / max(units, 1))
                (s.scaler.scale(loss) if s.scaler else loss).backward()
            loss_sum += weight * output.loss_sum.item()
            window.tokens += weight * batch.num_tokens
            window.rows += weight * batch.num_samples
            _accumulate(window.metrics, output.metrics, weight)  # zero-weight too: the same keys on every process
        loss = par.sum(loss_sum) / max(units, 1)
        if s.scaler:
            s.scaler.unscale_(s.optimizer)  # clip the true gradients
        grad_norm = par.clip(s.train_module, self.cfg.max_grad_norm)
        # Before anything reaches the weights. With fp16 loss scaling an overflowing step is expected now and then:
        # the scaler skips it and lowers the scale, so only the loss itself must be finite.
        _check_finite(step + 1, {"loss": loss, **({} if s.scaler else {"gradient norm": grad_norm})}, self.cfg)
        if s.scaler:
            s.scaler.step(s.optimizer)
            s.scaler.update()
        else:
            s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        return loss, units, grad_norm

    def window_metrics(self, window: "_Window", grad_norm: float) -> dict[str, float]:
        s, par = self.s, self.par
        seconds = max(window.seconds, 1e-9)
        tokens, rows = par.sum(window.tokens), par.sum(window.rows)
        self.totals.tokens += tokens
        self.totals.rows += rows
        self.totals.seconds += seconds
        metrics = {k: par.sum(v) / max(window.units, 1) for k, v in sorted(window.metrics.items())}
        return {"epoch": self.state.step / s.steps_per_epoch, "loss": window.loss / max(window.units, 1),
                "lr": s.scheduler.get_last_lr()[0], "grad_norm": grad_norm, "tokens_per_s": tokens / seconds,
                "samples_per_s": rows / seconds, **metrics}

    def evaluate(self, step: int) -> None:
        s, state = self.s, self.state
        if not s.val_batches:
            return
        loss, metrics = evaluate(s.train_module, s.val_batches, self.par, self.filler)
        _check_finite(step, {"eval loss": loss}, self.cfg)
        self.result.eval_metrics = metrics
        self.monitor.evaluation(step, loss, {f"eval_{k}": v for k, v in metrics.items()})
        if state.best_eval is None or loss < state.best_eval:
            state.best_eval, state.best_step, state.bad_evals = loss, step, 0
            if self.best.enabled:
                tensors = self.par.trainable_state(s.model)  # every process takes part in gathering
                if self.is_main:
                    self.best.save(tensors, step)
        else:
            state.bad_evals += 1

    def save_checkpoint(self) -> None:
        """Every process gathers its part of the states; the main process writes them."""
        s, par = self.s, self.par
        full = par.model_state(s.model)
        trainable = par.trainable_state(s.model) if hasattr(s.model, "peft_config") else None
        optimizer = par.optimizer_state(s.model, s.optimizer)
        rng_states = par.gather(ckpt.rng_state())
        self.state.scaler = s.scaler.state_dict() if s.scaler else {}
        if self.is_main:
            def files(folder: Path) -> None:
                save_result(folder, s.model, s.tokenizer, self.cfg, full)
                self.best.copy_into(folder)

            ckpt.save_checkpoint(s.out, self.state.step, trainable, optimizer, s.scheduler,
                                 dataclasses.asdict(self.state), self.cfg.save_total_limit, save_result=files,
                                 rng_states=rng_states)
        par.barrier()

    def finish(self) -> RunResult:
        s, state, result = self.s, self.state, self.result
        result.steps = result.weights_step = state.step
        if self.best.enabled and state.best_step is not None and state.best_step != state.step:
            self.par.load_trainable(s.model, self.best.load())
            result.weights_step = state.best_step
            log.info("the run keeps the weights of step %d, its best evaluation (eval loss %.4f), not of step %d",
                     state.best_step, state.best_eval, state.step)
        result.runtime_s = time.time() - self.monitor.start
        result.tokens_per_s = self.totals.tokens / max(self.totals.seconds, 1e-9)
        result.samples_per_s = self.totals.rows / max(self.totals.seconds, 1e-9)
        result.train_loss = result.losses[-1] if result.losses else None
        result.eval_losses = self.monitor.eval_points
        full = self.par.model_state(s.model)
        if self.is_main:
            save_result(s.out, s.model, s.tokenizer, self.cfg, full)
            self.best.discard()
            best = ({"best_step": state.best_step, "best_loss": round(state.best_eval, 6)}
                    if state.best_step is not None else {})
            gpu = ({"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(s.device) / 2**30, 2)}
                   if s.device.type == "cuda" else {})
            self.monitor.finish({"step": state.step, "stopped_early": result.stopped_early,
                                 "weights_step": result.weights_step, **best,
                                 "train_runtime_s": round(result.runtime_s, 2),
                                 "samples_per_s": round(result.samples_per_s, 4),
                                 "tokens_per_s": round(result.tokens_per_s, 2), "trainable_params": s.trainable_params,
                                 "processes": self.par.world, "precision": s.precision.name,
                                 "micro_batch_tokens": s.plan.token_budget,
                                 "gradient_checkpointing": s.plan.checkpointing, **gpu})
        self.par.barrier()
        return result


@dataclass
class _Window:
    """Sums over the current logging window."""

    loss: float = 0.0
    units: float = 0.0
    tokens: int = 0
    rows: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def _accumulate(into: dict[str, float], metrics: dict[str, float], weight: float = 1.0) -> None:
    for key, value in metrics.items():
        into[key] = into.get(key, 0.0) + weight * value


def _check_finite(step: int, values: dict[str, float], cfg: TrainConfig) -> None:
    for what, value in values.items():
        if not math.isfinite(value):
            clip = "" if cfg.max_grad_norm else " and turn gradient clipping on (max_grad_norm=1.0)"
            raise Diverged(f"step {step}: the {what} is {value}: training diverged and was stopped before it reached "
                           f"the weights; lower learning_rate (now {cfg.learning_rate:g}){clip} and start over "
                           "(overwrite_output_dir=true)")


def _trim_log(out: Path, step: int) -> list[dict]:
    """On resume, drop log lines written after the checkpoint by the interrupted run (and a torn last line)."""
    kept = [r for r in read_log(out) if r.get("step", 0) <= step and not r.get("done")]
    rewrite_log(out, kept)
    return kept
