"""How weights are trained (`method=`): full, freeze, lora, dora. Each method decides which parameters train and
how the result is saved; the training loop is the same for all of them.

- full:   every weight trains; the run directory holds a complete model.
- freeze: only the last `freeze_layers` decoder layers (and any `freeze_modules` names) train; saved as a full model.
- lora:   low-rank adapters (peft) on `lora_target`; the run directory holds the adapter only.
- dora:   weight-decomposed LoRA (peft `use_dora`); saved as an adapter like LoRA.
- qlora:  LoRA on a base loaded in 4-bit/8-bit by bitsandbytes (see loader.quantization_config).
A stage may add `heads`: new modules (the reward model's score layer) that always train in full.
"""

from __future__ import annotations

from tunesmith.config import TrainConfig
from tunesmith.errors import ConfigError

ADAPTER_METHODS = ("lora", "dora", "qlora")


def lora_targets(cfg: TrainConfig) -> str | list[str]:
    target = cfg.lora_target
    if isinstance(target, str):
        target = [t.strip() for t in target.split(",") if t.strip()]
    return "all-linear" if target == ["all-linear"] else target


def _decoder_layers(model):
    for module in model.modules():
        layers = getattr(module, "layers", None) or getattr(module, "h", None)
        if layers is not None and len(layers) and hasattr(layers, "__getitem__"):
            return layers
    raise ConfigError("config: method=freeze cannot find this model's decoder layers; use method=lora")


def _freeze_all_but(model, cfg: TrainConfig) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    layers = _decoder_layers(model)
    if cfg.freeze_layers > len(layers):
        raise ConfigError(f"config: freeze_layers={cfg.freeze_layers} but the model has {len(layers)} layers")
    for layer in list(layers)[len(layers) - cfg.freeze_layers:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    for name in [n.strip() for n in cfg.freeze_modules.split(",") if n.strip()]:
        matched = [p for n, p in model.named_parameters() if f".{name}." in f".{n}"]
        if not matched:
            raise ConfigError(f"config: freeze_modules: no parameter matches '{name}'; use names like lm_head, norm")
        for p in matched:
            p.requires_grad_(True)


def attach_adapter(model, cfg: TrainConfig, heads: tuple[str, ...] = ()):
    """Make the parameters that `cfg.method` trains trainable (wrapping in peft for adapter methods)."""
    checkpointing = {"use_reentrant": False}
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    if cfg.method in ("full", "freeze"):
        if cfg.method == "full":
            for p in model.parameters():
                p.requires_grad_(True)
        else:
            _freeze_all_but(model, cfg)
        for name, p in model.named_parameters():
            if name.split(".")[0] in heads:
                p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_targets(cfg),
        use_dora=cfg.method == "dora",
        bias="none",
        task_type="SEQ_CLS" if heads else "CAUSAL_LM",
        modules_to_save=list(heads) or None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # peft names the missing modules; keep its first line
        raise ConfigError(f"config: lora_target={cfg.lora_target!r} does not fit this model "
                          f"({str(e).splitlines()[0][:160]}); use all-linear or names like q_proj,v_proj") from None


def trainable_state(model) -> dict:
    """The tensors a checkpoint must hold to resume: exactly the trainable ones."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in params if params[n].requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise ConfigError(f"config: the checkpoint does not match this model/method (missing {missing[:2]}, "
                          f"unexpected {unknown[:2]}); resume with the config the checkpoint was made with")
    for name, tensor in state.items():
        params[name].data.copy_(tensor)


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
