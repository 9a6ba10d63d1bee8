"""`setup(cfg)`: everything a training run needs, built once and in an order that costs the user the least time
when something is wrong: output folder and resume checks, then every data row, then the tokenizer and encoding,
then (only then) the model, adapter, memory plan and optimizer.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.config import TrainConfig
from tunesmith.data.dataset import load_items
from tunesmith.data.packing import Example, MicroBatch
from tunesmith.data.templates import Template, get_template
from tunesmith.errors import ConfigError
from tunesmith.model.adapters import attach_adapter, count_parameters
from tunesmith.model.attention import use_varlen_attention, wants_varlen
from tunesmith.model.loader import (
    check_quantizable,
    load_model,
    load_tokenizer,
    pick_dtype,
    quantization_config,
    resolve_model,
)
from tunesmith.run import CONFIG_FILE, clear_results, is_finished, is_run, latest_checkpoint
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.dist import Dist
from tunesmith.train.memory import MemoryPlan, plan_memory
from tunesmith.train.optim import build_optimizer, build_scheduler
from tunesmith.train.stages import Stage, get_stage

log = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """What a checkpoint restores besides tensors: the data position and the early-stopping bookkeeping."""

    step: int = 0
    best_eval: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    memory_plan: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainerState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainingSetup:
    cfg: TrainConfig
    out: Path
    dist: Dist
    device: torch.device
    tokenizer: object
    template: Template
    stage: Stage
    train_examples: list[Example]
    val_batches: list[MicroBatch]
    model: torch.nn.Module
    plan: MemoryPlan
    optimizer: torch.optim.Optimizer
    scheduler: object
    state: TrainerState
    max_steps: int
    steps_per_epoch: int
    trainable_params: int
    resumed_from: Path | None = None


def check_output_dir(cfg: TrainConfig) -> Path:
    """output_dir must be (or become) a folder; a file there or above it is a one-line error."""
    out = Path(cfg.output_dir).expanduser()
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            where = "is a file" if folder == out else f"lies below the file {folder}"
            raise ConfigError(f"config: output_dir={cfg.output_dir} {where}; choose a folder path")
    return out


def prepare_output_dir(cfg: TrainConfig, resuming: bool, is_main: bool) -> Path:
    """A fresh run must not mix with an earlier one: refuse, or (overwrite_output_dir) clear its results first."""
    out = check_output_dir(cfg)
    if is_run(out) and not resuming:
        if not cfg.overwrite_output_dir:
            latest = latest_checkpoint(out)
            if is_finished(out):
                what, fix = "a finished run", "set overwrite_output_dir=true to train it again from scratch"
            elif latest is not None:
                what, fix = (f"an unfinished run (last checkpoint {latest.name})",
                             "set resume=true to continue it, or overwrite_output_dir=true to start over")
            else:
                what, fix = ("an unfinished run with no checkpoint to resume from",
                             "set overwrite_output_dir=true to start over")
            raise ConfigError(f"config: output_dir={out} already holds {what}; {fix}, or pick another output_dir")
        if is_main:
            clear_results(out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    return out


def save_result(folder: Path, model, tokenizer, cfg: TrainConfig) -> None:
    """What a finished run (and every checkpoint) holds: the adapter or complete model, the tokenizer carrying the
    training template, and the resolved config."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cfg.save(folder / CONFIG_FILE)


def setup(cfg: TrainConfig) -> TrainingSetup:
    from transformers import set_seed  # imports most of the ML stack: after the cheap checks below

    dist = Dist()
    is_main = dist.rank == 0
    check_output_dir(cfg)
    candidates = ckpt.find_resume_checkpoints(cfg.output_dir, cfg.resume)
    if candidates:
        ckpt.check_same_training(cfg, candidates[0])
    splits = load_items(cfg)  # every row is checked here, before the model loads
    device = dist.device(cfg.device)
    source = resolve_model(cfg.model)
    tokenizer = load_tokenizer(source)
    template = get_template(cfg.template, tokenizer)
    stage = get_stage(cfg)
    train_examples = stage.encode(splits.train, template, tokenizer, cfg, "train")
    val_examples = stage.encode(splits.val, template, tokenizer, cfg, "validation")
    _apply_template(tokenizer, template)  # what the run saves: chat renders prompts exactly as training did
    dtype = pick_dtype(cfg.dtype, device)
    quantization = None
    if cfg.method == "qlora":
        if cfg.quantization_bit == 4:
            check_quantizable(source, stage.head)
        quantization = quantization_config(cfg.quantization_bit, cfg.quantization_type, cfg.double_quantization,
                                           dtype)
    out = prepare_output_dir(cfg, resuming=bool(candidates), is_main=is_main)
    if is_main:
        cfg.save(out / CONFIG_FILE)

    set_seed(cfg.seed)
    base = load_model(source, dtype, device, quantization, head=stage.head)
    base.config.pad_token_id = tokenizer.pad_token_id
    if wants_varlen(device, base):
        use_varlen_attention(base)
    state = TrainerState()
    saved_plan = ckpt.read_state(candidates[0]).get("memory_plan") if candidates else None
    plan = plan_memory(cfg, base, device, saved=saved_plan)
    state.memory_plan = dataclasses.asdict(plan)
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
    resumed_from = None
    if candidates:
        resumed_from, saved = ckpt.resume(candidates, model, optimizer, scheduler)
        state = TrainerState.from_dict({**saved, "memory_plan": state.memory_plan})
        log.info("resumed from %s at step %d", resumed_from, state.step)
    if dist.world > 1 and stage.head == "score":
        raise ConfigError("config: stage=rm runs in one process for now (its score head is called outside DDP's "
                          "forward); run it without torchrun")
    return TrainingSetup(cfg, out, dist, device, tokenizer, template, stage, train_examples, val_batches, model, plan,
                         optimizer, scheduler, state, max_steps, steps_per_epoch, trainable, resumed_from)


def _apply_template(tokenizer, template: Template) -> None:
    tokenizer.chat_template = template.chat_template
    if template.stop != tokenizer.eos_token:
        tokenizer.eos_token = template.stop


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
