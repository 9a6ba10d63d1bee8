"""The one training path: setup -> train -> save. Every stage and method runs through `train()`.

Reading order: `train()` top to bottom. Data is checked before the model loads; each optimizer step takes a fixed
number of rows (per_device_batch_size * gradient_accumulation_steps, as the user set), packs them padding-free into
as few micro-batches as the token budget allows, and normalises the loss by all target tokens of the step. Under
torchrun each process takes every world_size-th row of a step and DDP averages the gradients.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.config import TrainConfig
from tunesmith.data.dataset import load_items
from tunesmith.data.templates import get_template
from tunesmith.errors import ConfigError
from tunesmith.model.adapters import attach_adapter, count_parameters
from tunesmith.model.attention import use_varlen_attention, wants_varlen
from tunesmith.model.loader import (
    load_model,
    load_tokenizer,
    pick_device,
    pick_dtype,
    quantization_config,
    resolve_model,
)
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.memory import plan_memory
from tunesmith.train.monitor import Monitor
from tunesmith.train.optim import build_optimizer, build_scheduler
from tunesmith.train.stages import get_stage

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


class Dist:
    """Process-group facts; a single process is world 1, rank 0 (torchrun sets the environment)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    def device(self, requested: str) -> torch.device:
        if self.world > 1 and torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return pick_device(requested)

    def sum(self, value: float, device) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.item()


def _prepare_output_dir(cfg: TrainConfig, resuming: bool) -> Path:
    out = Path(cfg.output_dir)
    if out.exists() and not resuming and (out / "trainer_log.jsonl").exists():
        if not cfg.overwrite_output_dir:
            raise ConfigError(f"config: output_dir={out} already holds a run; set resume=true to continue it, "
                              "overwrite_output_dir=true to start over, or pick another output_dir")
        for name in ("checkpoints", "tensorboard", "trainer_log.jsonl", "loss.png"):
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _trim_log(out: Path, step: int) -> list[dict]:
    """On resume, drop log lines written after the checkpoint by the interrupted run."""
    import json

    path = out / "trainer_log.jsonl"
    if not path.exists():
        return []
    kept = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("step", 0) <= step and not r.get("done")]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def rows_for_step(n_rows: int, rows_per_step: int, step: int, seed: int, shuffle: bool = True) -> list[int]:
    """The rows of optimizer step `step`: a fresh seeded permutation per epoch, so the position is just the step."""
    steps_per_epoch = math.ceil(n_rows / rows_per_step)
    epoch, index = divmod(step, steps_per_epoch)
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(n_rows, generator=generator).tolist() if shuffle else list(range(n_rows))
    return order[index * rows_per_step:(index + 1) * rows_per_step]


@torch.no_grad()
def evaluate(model, stage, batches, device) -> tuple[float, dict[str, float]]:
    """Mean loss over all targets of the validation set, plus the stage's metrics (e.g. rm accuracy)."""
    model.eval()
    total, count, metrics = 0.0, 0, {}
    for batch in batches:
        out = stage.loss(model, batch.to(device))
        total += out.loss_sum.item()
        count += out.num_targets
        _accumulate(metrics, out.metrics)
    model.train()
    return total / max(count, 1), {k: v / max(count, 1) for k, v in metrics.items()}


def _accumulate(into: dict[str, float], metrics: dict[str, float]) -> None:
    for key, value in metrics.items():
        into[key] = into.get(key, 0.0) + value


def train(cfg: TrainConfig, show_progress: bool = True) -> RunResult:
    from transformers import set_seed

    dist = Dist()
    is_main = dist.rank == 0
    resume_from = ckpt.find_resume_checkpoint(cfg.output_dir, cfg.resume)
    splits = load_items(cfg)  # every row is checked here, before the model loads
    out = _prepare_output_dir(cfg, resuming=resume_from is not None) if is_main else Path(cfg.output_dir)
    if is_main:
        cfg.save(out / "config.yaml")

    # --- setup: model, template, data, adapter, optimizer
    device = dist.device(cfg.device)
    source = resolve_model(cfg.model)
    tokenizer = load_tokenizer(source)
    template = get_template(cfg.template, tokenizer)
    stage = get_stage(cfg)
    train_examples = stage.encode(splits.train, template, tokenizer, cfg, "train")
    val_examples = stage.encode(splits.val, template, tokenizer, cfg, "validation")
    set_seed(cfg.seed)
    dtype = pick_dtype(cfg.dtype, device)
    quantization = (quantization_config(cfg.quantization_bit, cfg.quantization_type, cfg.double_quantization, dtype)
                    if cfg.method == "qlora" else None)
    base = load_model(source, dtype, device, quantization, head=stage.head)
    base.config.pad_token_id = tokenizer.pad_token_id
    if wants_varlen(device, base):
        use_varlen_attention(base)
    plan = plan_memory(cfg, base, device)
    model = attach_adapter(base, dataclasses.replace(cfg, gradient_checkpointing=plan.checkpointing),
                           heads=stage.heads)
    if cfg.torch_compile:
        compile_layers(model)
    val_batches = stage.batches(val_examples, plan.token_budget)
    stage.prepare(model)
    trainable, total = count_parameters(model)
    steps_per_epoch = math.ceil(len(train_examples) / cfg.rows_per_step)
    max_steps = cfg.max_steps or math.ceil(cfg.num_epochs * steps_per_epoch)
    log.info("model %s on %s: %s trainable of %s parameters (%.2f%%); %d train rows, %d validation rows, "
             "%d steps of %d rows", cfg.model or "embedded SmolLM2-135M-Instruct", device, f"{trainable:,}",
             f"{total:,}", 100 * trainable / total, len(train_examples), len(val_examples), max_steps,
             cfg.rows_per_step)
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg, max_steps)
    state = {"step": 0, "best_eval": None, "bad_evals": 0}
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, model, optimizer, scheduler)
        log.info("resumed from %s at step %d", resume_from, state["step"])
    train_model = model
    if dist.world > 1 and stage.head == "score":
        raise ConfigError("config: stage=rm runs in one process for now (its score head is called outside DDP's "
                          "forward); run it without torchrun")
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model)

    monitor = Monitor(out, max_steps, state["step"], enabled=is_main, progress=show_progress)
    if resume_from is not None and is_main:
        monitor.restore(_trim_log(out, state["step"]))

    result = RunResult(out, max_steps, None)

    def run_eval(step: int) -> float | None:
        if not val_batches:
            return None
        loss, metrics = evaluate(model, stage, val_batches, device)
        result.eval_metrics = metrics
        monitor.evaluation(step, loss, {f"eval_{k}": v for k, v in metrics.items()})
        return loss

    # --- train
    if state["step"] == 0:
        run_eval(0)
    model.train()
    window = {"loss": 0.0, "targets": 0, "tokens": 0, "rows": 0, "seconds": 0.0, "metrics": {}}
    run_start, run_tokens, run_rows, train_seconds = time.time(), 0, 0, 0.0
    step = state["step"]
    while step < max_steps:
        step_start = time.time()
        rows = rows_for_step(len(train_examples), cfg.rows_per_step, step, cfg.seed, cfg.shuffle)
        rows = rows[dist.rank::dist.world]
        batches = stage.batches([train_examples[i] for i in rows], plan.token_budget)
        step_targets = dist.sum(sum(b.num_targets for b in batches), device)
        step_loss = 0.0
        for i, batch in enumerate(batches):
            batch = batch.to(device)
            sync = i == len(batches) - 1 or dist.world == 1
            with _no_sync(train_model, sync):
                output = stage.loss(train_model, batch)
                # DDP averages gradients over processes, so scale by world to get the mean over all targets.
                (output.loss_sum * dist.world / max(step_targets, 1)).backward()
            step_loss += output.loss_sum.item()
            window["tokens"] += batch.num_tokens
            window["rows"] += batch.num_samples
            _accumulate(window["metrics"], output.metrics)
        grad_norm = _clip(model, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window["seconds"] += time.time() - step_start  # training time only: evals and saves are not counted
        loss = dist.sum(step_loss, device) / max(step_targets, 1)
        result.losses.append(loss)
        window["loss"] += loss * step_targets
        window["targets"] += step_targets
        metrics = None
        if step % cfg.logging_steps == 0 or step == max_steps:
            seconds = max(window["seconds"], 1e-9)
            tokens, rows_done = dist.sum(window["tokens"], device), dist.sum(window["rows"], device)
            run_tokens, run_rows, train_seconds = run_tokens + tokens, run_rows + rows_done, train_seconds + seconds
            metrics = {"epoch": step / steps_per_epoch, "loss": window["loss"] / max(window["targets"], 1),
                       "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                       "tokens_per_s": tokens / seconds, "samples_per_s": rows_done / seconds,
                       **{k: v / max(window["targets"], 1) for k, v in window["metrics"].items()}}
            window = {"loss": 0.0, "targets": 0, "tokens": 0, "rows": 0, "seconds": 0.0, "metrics": {}}
        monitor.step(step, metrics)
        state["step"] = step
        if cfg.eval_steps and step % cfg.eval_steps == 0 and step < max_steps:
            eval_loss = run_eval(step)
            if _should_stop(state, eval_loss, cfg.early_stopping_patience):
                log.warning("early stopping at step %d: eval loss has not improved for %d evaluations",
                            step, cfg.early_stopping_patience)
                result.stopped_early = True
        if is_main and cfg.save_steps and step % cfg.save_steps == 0 and step < max_steps:
            ckpt.save_checkpoint(out, step, model, optimizer, scheduler, state, cfg.save_total_limit)
        if result.stopped_early:
            break

    # --- save
    if not result.stopped_early:  # an early stop has just evaluated this step
        _should_stop(state, run_eval(step), 0)
    result.steps = step
    result.runtime_s = time.time() - run_start
    result.tokens_per_s = run_tokens / max(train_seconds, 1e-9)
    result.samples_per_s = run_rows / max(train_seconds, 1e-9)
    result.train_loss = result.losses[-1] if result.losses else None
    result.eval_losses = monitor.eval_points
    if is_main:
        _save_run(out, model, tokenizer, template)
        monitor.finish({"step": step, "stopped_early": result.stopped_early, "train_runtime_s": round(
            result.runtime_s, 2), "samples_per_s": round(result.samples_per_s, 4),
            "tokens_per_s": round(result.tokens_per_s, 2), "trainable_params": trainable,
            "micro_batch_tokens": plan.token_budget, "gradient_checkpointing": plan.checkpointing,
            **({"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
               if device.type == "cuda" else {})})
    return result


def compile_layers(model) -> None:
    """torch.compile each decoder layer (not the whole model: the layers share one compiled graph, and the packed
    attention's row loop stays outside it). Shapes change with every micro-batch, hence dynamic."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(causal.get_decoder(), "layers", None)
    if layers is None:
        raise ConfigError("config: torch_compile=true needs a model with decoder layers (model.layers); "
                          "set torch_compile=false")
    for layer in layers:
        layer.compile(dynamic=True)


class _no_sync:
    """Skip DDP's gradient all-reduce on all but the last micro-batch of a step (a no-op without DDP)."""

    def __init__(self, model, sync: bool):
        self.ctx = model.no_sync() if (not sync and hasattr(model, "no_sync")) else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx else False


def _clip(model, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    return float(norm)


def _should_stop(state: dict, eval_loss: float | None, patience: int) -> bool:
    if eval_loss is None:
        return False
    if state["best_eval"] is None or eval_loss < state["best_eval"]:
        state["best_eval"], state["bad_evals"] = eval_loss, 0
        return False
    state["bad_evals"] += 1
    return bool(patience) and state["bad_evals"] >= patience


def _save_run(out: Path, model, tokenizer, template) -> None:
    """The run directory: the PEFT adapter plus a tokenizer that carries the training template."""
    model.save_pretrained(out)
    tokenizer.chat_template = template.chat_template
    if template.stop != tokenizer.eos_token:
        tokenizer.eos_token = template.stop
    tokenizer.save_pretrained(out)
