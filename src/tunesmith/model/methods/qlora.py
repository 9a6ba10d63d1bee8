"""method=qlora: LoRA on a base that bitsandbytes loads in 4-bit (nf4/fp4, optional double quantization) or
8-bit; it runs on CPU too."""

from __future__ import annotations

from tunesmith.model.loader import check_quantizable, quantization_config
from tunesmith.model.methods.base import CHECKPOINTING
from tunesmith.model.methods.lora import LoraMethod


class QLoraMethod(LoraMethod):
    name = "qlora"
    keys = LoraMethod.keys + ("quantization_bit", "quantization_type", "double_quantization")

    def __init__(self, quantization_bit: int = 4, quantization_type: str = "nf4", double_quantization: bool = True,
                 **settings):
        super().__init__(**settings)
        self.bits, self.quant_type, self.double_quant = quantization_bit, quantization_type, double_quantization

    def check_base(self, source: str, head: str) -> None:
        if self.bits == 4:
            check_quantizable(source, head)

    def quantization(self, dtype):
        return quantization_config(self.bits, self.quant_type, self.double_quant, dtype)

    def prepare(self, model, checkpointing: bool):
        from peft import prepare_model_for_kbit_training

        keep_trainable_layout(model)
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                               gradient_checkpointing_kwargs=CHECKPOINTING)


def keep_trainable_layout(model) -> None:
    """On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit weight for its inference kernel the first time the
    layer runs in eval mode without gradients, for good, and that kernel has no backward: after one evaluation every
    later step's gradients came out wrong (126% off on the tiny test Llama). A model being trained keeps the layout
    autograd runs through. (`support_avx512bf16_for_cpu` is the switch; tests/model/test_methods.py fails if that
    changes.)"""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
