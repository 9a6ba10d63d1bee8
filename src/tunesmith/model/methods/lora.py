"""method=lora: low-rank adapters (peft) on `lora_target`; method=dora: weight-decomposed LoRA (peft `use_dora`).
The run holds the adapter only."""

from __future__ import annotations

import re

from tunesmith.errors import ConfigError
from tunesmith.model.lora_addmm import use_addmm_lora
from tunesmith.model.methods.base import Method
from tunesmith.model.parts import unused_by_text


def lora_targets(target: str | list[str]) -> str | list[str]:
    if isinstance(target, str):
        target = [t.strip() for t in target.split(",") if t.strip()]
    return "all-linear" if target == ["all-linear"] else target


class LoraMethod(Method):
    name = "lora"
    saves_adapter = True
    keys = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target")
    use_dora = False

    def __init__(self, lora_rank: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.0,
                 lora_target: str | list[str] = "all-linear", **settings):
        super().__init__(**settings)
        self.rank, self.alpha, self.dropout, self.target = lora_rank, lora_alpha, lora_dropout, lora_target

    def prepare(self, model, checkpointing: bool):
        """What happens to the base before the adapter goes on (qlora prepares its quantized base here)."""
        self.enable_checkpointing(model, checkpointing)
        return model

    def wrap(self, model, checkpointing: bool, heads: tuple[str, ...] = ()):
        from peft import LoraConfig, get_peft_model

        model = self.prepare(model, checkpointing)
        unused = unused_by_text(model)  # a multimodal model's towers: text-only rows never reach their layers
        config = LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=lora_targets(self.target), use_dora=self.use_dora, bias="none",
                            task_type="SEQ_CLS" if heads else "CAUSAL_LM", modules_to_save=list(heads) or None,
                            exclude_modules="|".join(rf"{re.escape(name)}(\..*)?" for name in unused) or None)
        try:
            model = get_peft_model(model, config)
        except ValueError as e:  # peft names the missing modules; keep its first line
            raise ConfigError(f"config: lora_target={self.target!r} does not fit this model "
                              f"({str(e).splitlines()[0][:160]}); use all-linear or names like q_proj,v_proj") from None
        use_addmm_lora(model)  # the same update in one fused multiply-add per layer
        return model


class DoraMethod(LoraMethod):
    name = "dora"
    use_dora = True
