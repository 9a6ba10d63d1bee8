"""Attach trainable adapters to a base model (LoRA now; other methods plug in here)."""

from __future__ import annotations

from tunesmith.config import TrainConfig
from tunesmith.errors import ConfigError


def lora_targets(cfg: TrainConfig) -> str | list[str]:
    target = cfg.lora_target
    if isinstance(target, str):
        target = [t.strip() for t in target.split(",") if t.strip()]
    return "all-linear" if target == ["all-linear"] else target


def attach_adapter(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_targets(cfg),
        bias="none",
        task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # peft names the missing modules; keep its first line
        raise ConfigError(f"config: lora_target={cfg.lora_target!r} does not fit this model "
                          f"({str(e).splitlines()[0][:160]}); use all-linear or names like q_proj,v_proj") from None


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
