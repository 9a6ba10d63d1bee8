"""Optimizers and learning-rate schedules by name."""

from __future__ import annotations

import math

import torch

from tunesmith.config import TrainConfig
from tunesmith.errors import ConfigError
from tunesmith.extras import require


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw_8bit":
        bnb = require("bitsandbytes", f"optimizer={cfg.optimizer} (or use optimizer=adamw)")
        return bnb.optim.AdamW8bit(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer.startswith("paged_"):
        # Paged optimizers move their state to CPU RAM under GPU memory pressure: CUDA unified memory only.
        if not torch.cuda.is_available():
            raise ConfigError(f"config: optimizer={cfg.optimizer} needs a CUDA GPU; use adamw or adamw_8bit here")
        bnb = require("bitsandbytes", f"optimizer={cfg.optimizer}")
        cls = bnb.optim.PagedAdamW8bit if cfg.optimizer == "paged_adamw_8bit" else bnb.optim.PagedAdamW
        return cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * total_steps)  # as transformers' Trainer does
    return get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
