"""Processes and how they share the model: the one object the training loop asks, whatever the strategy.

- one process: nothing is wrapped.
- ddp: accelerate prepares DistributedDataParallel; each process holds the whole model, gradients are averaged.
- fsdp: PyTorch's FSDP2 (`fully_shard`) on every decoder layer and on the root: weights, gradients and optimizer
  state are sharded over the processes (frozen base weights too: LoRA trains only its adapters). The same code runs
  on CPUs (gloo) and GPUs (NCCL); accelerate only applies FSDP on accelerators, so sharding is done here directly.
- deepspeed: accelerate's DeepSpeed plugin (ZeRO-2/3 by preset, or a JSON file); CUDA only.

accelerate's PartialState sets up the process group from whatever launched us (tunesmith's own launcher, torchrun,
accelerate launch) and picks each process's device. The model the wrappers see is `StageForward`: the stage's
whole loss as one forward, so DDP and FSDP see every parameter the loss touches (a reward head, or the chunked
vocabulary head that is called outside the model's own forward).
"""

from __future__ import annotations

import contextlib
import os

import torch

from tunesmith.errors import ConfigError
from tunesmith.extras import require
from tunesmith.model.loader import pick_device
from tunesmith.model.parts import decoder_layers

DEEPSPEED_PRESETS = {
    "zero2": {"zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True}},
    "zero3": {"zero_optimization": {"stage": 3, "overlap_comm": True, "stage3_gather_16bit_weights_on_model_save":
                                    True}},
    "zero3_offload": {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"},
                                            "offload_optimizer": {"device": "cpu"},
                                            "stage3_gather_16bit_weights_on_model_save": True}},
}


class StageForward(torch.nn.Module):
    """`stage.loss(model, batch)` as a module's forward, so a data-parallel wrapper syncs what the loss uses."""

    def __init__(self, model: torch.nn.Module, stage, autocast=None):
        super().__init__()
        self.model = model
        self.__dict__["stage"] = stage  # not a submodule: the DPO reference copy must stay outside the wrapper
        self.__dict__["autocast"] = autocast or contextlib.nullcontext

    def forward(self, batch):
        with self.autocast():  # the forward (and the loss) in the compute dtype; backward runs outside, as it should
            return self.stage.loss(self.model, batch)


def strategy_of(requested: str, world: int) -> str:
    if requested == "auto":
        return "ddp" if world > 1 else "none"
    return requested if world > 1 or requested == "deepspeed" else "none"


def deepspeed_config(spec: str, cfg) -> dict:
    """A preset name or a JSON file, completed with the batch sizes and clipping of the tunesmith config."""
    import json
    from pathlib import Path

    if spec in DEEPSPEED_PRESETS:
        config = json.loads(json.dumps(DEEPSPEED_PRESETS[spec]))
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"config: deepspeed={spec!r} is neither a preset ({', '.join(DEEPSPEED_PRESETS)}) nor a "
                              "JSON file")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not a DeepSpeed JSON config ({e}); fix the file") from None
    config.setdefault("train_micro_batch_size_per_gpu", cfg.per_device_batch_size)
    config.setdefault("gradient_accumulation_steps", cfg.gradient_accumulation_steps)
    config.setdefault("gradient_clipping", cfg.max_grad_norm)
    return config


class Parallel:
    def __init__(self, cfg):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.strategy = strategy_of(cfg.distributed, self.world)
        self.rank, self.local_world = 0, 1
        if self.strategy == "none":
            self.device = pick_device(cfg.device)
            return
        if self.strategy == "deepspeed":
            require("deepspeed", "distributed=deepspeed")
            if not torch.cuda.is_available():
                raise ConfigError("config: distributed=deepspeed needs CUDA GPUs; use distributed=fsdp (or ddp) here")
        from accelerate import PartialState

        state = PartialState(cpu=cfg.device == "cpu" or not torch.cuda.is_available())
        self.rank, self.device = state.process_index, state.device
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        self.cfg = cfg

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- wrapping
    def wrap(self, model, stage, autocast=None):
        """The module the loop calls (`train_module(batch)` -> LossOutput); `autocast()`: the mixed-precision
        context for its forward."""
        forward = StageForward(model, stage, autocast)
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(forward, device_ids=ids)
        if self.strategy == "fsdp":
            return self._fully_shard(forward, model)
        return forward

    def _fully_shard(self, forward: StageForward, model):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

        mesh = init_device_mesh(self.device.type, (self.world,))
        offload = {"offload_policy": CPUOffloadPolicy()} if self.cfg.fsdp_cpu_offload else {}
        layers = decoder_layers(model)
        if not layers:
            raise ConfigError("config: distributed=fsdp cannot find this model's decoder layers; use distributed=ddp")
        for layer in layers:
            fully_shard(layer, mesh=mesh, **offload)
        return fully_shard(forward, mesh=mesh, **offload)

    def gradient_sync(self, module, sync: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.strategy == "ddp" and not sync:
            return module.no_sync()
        if self.strategy == "fsdp":
            module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    # --- numbers every process must agree on
    def sum(self, value: float) -> float:
        return self._reduce(value, torch.distributed.ReduceOp.SUM)

    def max(self, value: float) -> float:
        return self._reduce(value, torch.distributed.ReduceOp.MAX)

    def _reduce(self, value: float, op) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t, op=op)
        return t.item()

    def gather(self, obj) -> list:
        """Every process's `obj`, in rank order (picklable objects; small ones: RNG states)."""
        if self.world == 1:
            return [obj]
        found = [None] * self.world
        torch.distributed.all_gather_object(found, obj)
        return found

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def clip(self, module, max_norm: float) -> float:
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return 0.0
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    # --- full (unsharded) states, for saving on the main process; every process must call these
    def trainable_state(self, model) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if self.strategy != "fsdp":
            return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                      ignore_frozen_params=True))
        return {k: v.contiguous() for k, v in state.items()}

    def model_state(self, model) -> dict[str, torch.Tensor] | None:
        """The whole model's state for save_pretrained, or None where the model itself is complete (no sharding)."""
        if self.strategy != "fsdp":
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        # Tied weights (an embedding shared with the head) come back as two separate copies; keep the one name
        # named_parameters() gives, as save_pretrained does for an unsharded model.
        keep = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
        return {k: v for k, v in state.items() if k in keep}

    def load_trainable(self, model, state: dict[str, torch.Tensor]) -> None:
        from tunesmith.model.methods.base import load_trainable_state

        if self.strategy != "fsdp":
            return load_trainable_state(model, state)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))

    def optimizer_state(self, model, optimizer) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = self.strategy == "fsdp"
        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=full, cpu_offload=full))

    def load_optimizer(self, model, optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        full = self.strategy == "fsdp"
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=full))
