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
from tunesmith.data.dataset import DataSpec, load_items, unfilled_placeholders
from tunesmith.data.packing import Example, MicroBatch
from tunesmith.data.templates import Template, get_template
from tunesmith.errors import ConfigError
from tunesmith.kernel_caches import TRAINING_ENTRIES, bound_kernel_caches, compile_cache_per_cpu
from tunesmith.model.attention import plan_cpu_attention, use_varlen_attention, wants_varlen
from tunesmith.model.loader import load_model, load_tokenizer, resolve_model
from tunesmith.model.methods import get_method
from tunesmith.model.methods.base import count_parameters
from tunesmith.model.row_isolation import packed_rows_stay_apart
from tunesmith.run import CONFIG_FILE, clear_results, is_finished, is_run, latest_checkpoint
from tunesmith.stages import get_stage
from tunesmith.stages.base import Stage
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.memory import MemoryPlan, plan_memory
from tunesmith.train.optim import build_optimizer, build_scheduler
from tunesmith.train.parallel import Parallel
from tunesmith.train.precision import Precision, choose_precision, keep_trainable_in

log = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """What a checkpoint restores besides tensors: the data position and the early-stopping bookkeeping."""

    step: int = 0
    best_eval: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    memory_plan: dict = field(default_factory=dict)
    rows_per_step: int = 0  # over all processes: a resume must keep it
    world_size: int = 1
    scaler: dict = field(default_factory=dict)  # fp16 loss scaling: the scale reached so far

    @classmethod
    def from_dict(cls, data: dict) -> "TrainerState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainingSetup:
    cfg: TrainConfig
    out: Path
    par: Parallel
    device: torch.device
    tokenizer: object
    template: Template
    stage: Stage
    train_examples: list[Example]
    val_batches: list[MicroBatch]
    model: torch.nn.Module  # the model itself (what is saved)
    train_module: torch.nn.Module  # what the loop calls: the stage's loss as a forward, wrapped for the strategy
    plan: MemoryPlan
    optimizer: torch.optim.Optimizer
    scheduler: object
    state: TrainerState
    max_steps: int
    steps_per_epoch: int
    trainable_params: int
    precision: Precision
    scaler: object | None  # torch.amp.GradScaler for fp16
    resumed_from: Path | None = None
    packed: bool = True  # rows share a micro-batch's sequence (false where the model cannot keep them apart)


def check_output_dir(cfg: TrainConfig) -> Path:
    """output_dir must be (or become) a folder; a file there or above it is a one-line error."""
    out = Path(cfg.output_dir).expanduser()
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            where = "is a file" if folder == out else f"lies below the file {folder}"
            raise ConfigError(f"config: output_dir={cfg.output_dir} {where}; choose a folder path")
    return out


def check_fresh(cfg: TrainConfig, resuming: bool) -> None:
    """A fresh run must not mix with an earlier one: without overwrite_output_dir, a folder holding a run is
    refused (read-only: every process checks before the main one writes anything)."""
    out = check_output_dir(cfg)
    if is_run(out) and not resuming and not cfg.overwrite_output_dir:
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


def prepare_output_dir(cfg: TrainConfig, resuming: bool) -> Path:
    """The main process's part: clear an earlier run's results (overwrite_output_dir) and create the folder."""
    out = check_output_dir(cfg)
    if is_run(out) and not resuming:
        clear_results(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_result(folder: Path, model, tokenizer, cfg: TrainConfig, state_dict: dict | None = None) -> None:
    """What a finished run (and every checkpoint) holds: the adapter or complete model, the tokenizer carrying the
    training template, and the resolved config. `state_dict`: the full weights when the model is sharded."""
    model.save_pretrained(folder, **({"state_dict": state_dict} if state_dict is not None else {}))
    tokenizer.save_pretrained(folder)
    cfg.save(folder / CONFIG_FILE)


def check_distributed(cfg: TrainConfig, stage: Stage, method) -> None:
    """Refuse, before any process starts or loads a model, a combination that cannot work."""
    world = cfg.world_size
    if cfg.distributed == "fsdp" and method.name == "qlora" and not torch.cuda.is_available():
        raise ConfigError("config: distributed=fsdp with method=qlora needs CUDA GPUs (bitsandbytes' 4-bit weights "
                          "shard only there); use distributed=ddp on CPUs")
    if cfg.distributed == "fsdp" and stage.name == "dpo" and not method.saves_adapter and world > 1:
        raise ConfigError("config: stage=dpo with method=full/freeze keeps a frozen reference copy, which "
                          "distributed=fsdp does not shard; use method=lora (its reference is the base itself) or "
                          "distributed=ddp")
    if cfg.torch_compile and cfg.distributed == "fsdp" and world > 1:
        raise ConfigError("config: torch_compile=true is not combined with distributed=fsdp yet; set one of them off")


def setup(cfg: TrainConfig) -> TrainingSetup:
    from transformers import set_seed  # imports most of the ML stack: after the cheap checks below

    bound_kernel_caches(TRAINING_ENTRIES)  # before the first matmul of this process
    check_output_dir(cfg)
    candidates = ckpt.find_resume_checkpoints(cfg.output_dir, cfg.resume)
    if candidates:
        ckpt.check_same_training(cfg, candidates[0])
    stage, method = get_stage(cfg.stage, cfg), get_method(cfg.method, cfg)
    check_distributed(cfg, stage, method)
    splits = load_items(DataSpec.from_settings(cfg), stage.checked)  # every row checked before the model loads
    slots, names = unfilled_placeholders(splits.train)
    if slots >= 2:  # not an error (answers may teach template code), but never trained on in silence
        log.warning("%d training rows have unfilled placeholders in their answers (%s): the model will learn to say "
                    "them; replace them with the real text (`tunesmith doctor` shows the rows)", slots,
                    ", ".join(f"{{{{{name}}}}}" for name, _ in names.most_common(3)))
    par = Parallel(cfg)
    device = par.device
    source = resolve_model(cfg.model)
    tokenizer = load_tokenizer(source)
    template = get_template(cfg.template, tokenizer)
    train_examples = stage.encode(splits.train, template, tokenizer, "train")
    val_examples = stage.encode(splits.val, template, tokenizer, "validation")
    template.apply_to(tokenizer)  # what the run saves: chat renders prompts exactly as training did
    precision = choose_precision(cfg.dtype, device)
    method.check_base(source, stage.head)
    if cfg.train_from_scratch and method.saves_adapter:
        log.warning("train_from_scratch with method=%s: the random base weights are not saved, so the adapter will "
                    "not load afterwards (this run measures speed and memory); method=full keeps the model",
                    method.name)
    quantization = method.quantization(precision.compute)
    check_fresh(cfg, resuming=bool(candidates))
    par.barrier()  # every process has looked at the folder before the main one changes it
    out = check_output_dir(cfg)
    if par.is_main:
        prepare_output_dir(cfg, resuming=bool(candidates))
        cfg.save(out / CONFIG_FILE)
    par.barrier()  # the main process has cleared or created the run directory

    set_seed(cfg.seed)
    base = load_model(source, precision.storage(method.saves_adapter), device, quantization, head=stage.head,
                      from_scratch=cfg.train_from_scratch)
    base.config.pad_token_id = tokenizer.pad_token_id
    if wants_varlen(device, base):
        use_varlen_attention(base)
        if device.type == "cpu":
            plan_cpu_attention(precision.compute, cfg.cutoff_len)
    state = TrainerState(rows_per_step=cfg.rows_per_step, world_size=par.world)
    saved_plan = ckpt.read_state(candidates[0]).get("memory_plan") if candidates else None
    plan = plan_memory(cfg, base, device, saved=saved_plan, trains_all_weights=not method.saves_adapter,
                       processes=par.local_world)
    # Every process plans from its own free memory; they agree on the smallest budget (and on recomputing if any
    # must), so all of them group rows the same way.
    plan = MemoryPlan(int(-par.max(-plan.token_budget)), bool(par.max(float(plan.checkpointing))), plan.free_bytes,
                      plan.bytes_per_token)
    state.memory_plan = dataclasses.asdict(plan)
    model = method.wrap(base, plan.checkpointing, stage.heads)
    packed = packed_rows_stay_apart(model)  # after wrap: a 4-bit base runs in eval mode only once it is trainable
    keep_trainable_in(model, precision.trainable)
    if cfg.torch_compile:
        compile_layers(model)
    val_batches = stage.batches(val_examples, plan.token_budget, packed)
    stage.prepare(model)  # before sharding: DPO's frozen reference copy is made from whole weights
    trainable, total = count_parameters(model)
    train_module = par.wrap(model, stage, lambda: precision.autocast(device, model))
    steps_per_epoch = math.ceil(len(train_examples) / cfg.rows_per_step)
    max_steps = cfg.max_steps or math.ceil(cfg.num_epochs * steps_per_epoch)
    log.info("model %s on %s: %s trainable of %s parameters (%.2f%%); %d train rows, %d validation rows, "
             "%d steps of %d rows (%d per process x %d accumulation%s); precision %s%s",
             cfg.model or "embedded SmolLM2-135M-Instruct", device, f"{trainable:,}", f"{total:,}",
             100 * trainable / max(total, 1), len(train_examples), len(val_examples), max_steps, cfg.rows_per_step,
             cfg.per_device_batch_size, cfg.gradient_accumulation_steps,
             f" x {par.world} processes, {par.strategy}" if par.world > 1 else "", precision.name,
             " (this CPU has fast bf16)" if device.type == "cpu" and precision.mixed else "")
    optimizer = build_optimizer(train_module.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg, max_steps)
    resumed_from = None
    if candidates:
        resumed_from, saved = ckpt.resume(candidates, model, optimizer, scheduler, par)
        state = TrainerState.from_dict({**saved, "memory_plan": state.memory_plan, "rows_per_step": cfg.rows_per_step,
                                        "world_size": par.world})
        log.info("resumed from %s at step %d", resumed_from, state.step)
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
    if scaler is not None and state.scaler:
        scaler.load_state_dict(state.scaler)
    return TrainingSetup(cfg, out, par, device, tokenizer, template, stage, train_examples, val_batches, model,
                         train_module, plan, optimizer, scheduler, state, max_steps, steps_per_epoch, trainable,
                         precision, scaler, resumed_from, packed)


def compile_layers(model) -> None:
    """torch.compile each decoder layer (not the whole model: the layers share one compiled graph, and the packed
    attention's row loop stays outside it). Shapes change with every micro-batch, hence dynamic."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(causal.get_decoder(), "layers", None)
    if layers is None:
        raise ConfigError("config: torch_compile=true needs a model with decoder layers (model.layers); "
                          "set torch_compile=false")
    folder = compile_cache_per_cpu()
    if folder is not None:
        log.info("torch.compile's cache for this CPU kind: %s", folder)
    for layer in layers:
        layer.compile(dynamic=True)
