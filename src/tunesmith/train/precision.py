"""Numeric precision for training, as users of HF Trainer expect it: mixed precision keeps trainable weights and
optimizer state in fp32 and runs the forward pass in bf16 (or fp16 with a gradient scaler) under autocast; pure
low-precision weights only when asked for (`dtype=pure_bf16|pure_fp16`).

`dtype=auto` chooses per device: bf16 mixed on GPUs with bf16 and on CPUs with fast bf16 (AVX512-BF16 or AMX:
bf16 matmuls run 2-5x fp32 there, confirmed by timing one), fp16 mixed on older GPUs, fp32 elsewhere (on an
AVX2-only CPU bf16 matmuls run at about 1 GFLOP/s). With an adapter method the frozen base weights are stored in
the compute dtype: they are only read, so bf16 storage loses nothing autocast would not lose anyway, and halves
their memory.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass

import torch

from tunesmith.model.loader import cpu_has_fast_bf16

log = logging.getLogger(__name__)
NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Precision:
    compute: torch.dtype  # what the forward pass runs in
    trainable: torch.dtype  # what trained weights (and so the optimizer state) are kept in
    mixed: bool  # autocast from `trainable` to `compute`
    scaler: bool  # fp16: scale the loss so small gradients survive

    @property
    def name(self) -> str:
        if not self.mixed:
            return NAMES[self.compute] if self.compute == torch.float32 else f"pure {NAMES[self.compute]}"
        return f"{NAMES[self.compute]} mixed"

    def storage(self, adapter_method: bool) -> torch.dtype:
        """The dtype to load the base in: frozen under an adapter (compute dtype), else the trainable dtype."""
        return self.compute if adapter_method else self.trainable

    def autocast(self, device: torch.device, model: torch.nn.Module | None = None):
        """The forward pass's context. Under autocast, peft's habit of casting each adapter's input to the adapter's
        fp32 weights is switched off for `model`: autocast casts it straight back to the compute dtype, so the two
        copies per adapted layer (and two more in the backward) bought nothing; on a CPU they were 7% of a step."""
        if not self.mixed:
            return contextlib.nullcontext()
        return _both(torch.autocast(device.type, dtype=self.compute),
                     _no_adapter_input_casts(model) if model is not None else contextlib.nullcontext())


@contextlib.contextmanager
def _both(first, second):
    with first, second:
        yield


_adapter_layers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _no_adapter_input_casts(model):
    """What `peft.helpers.disable_input_dtype_casting` does (the flag it sets, restored on exit), with the model's
    adapter layers found once per model: the helper walks all modules twice on every forward, 6 ms per micro-batch
    on SmolLM2 (0.4% of the CPU benchmark's step). tests/train/test_precision.py checks the flag's effect."""
    if model not in _adapter_layers:
        from peft.tuners.tuners_utils import BaseTunerLayer

        _adapter_layers[model] = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    layers = _adapter_layers[model]
    before = [m.cast_input_dtype_enabled for m in layers]
    for m in layers:
        m.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for m, enabled in zip(layers, before):
            m.cast_input_dtype_enabled = enabled


def choose_precision(requested: str, device: torch.device) -> Precision:
    fp32, bf16, fp16 = torch.float32, torch.bfloat16, torch.float16
    if requested == "auto":
        if device.type == "cuda":
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_fast_bf16():
            requested = "bf16"
        else:
            requested = "fp32"
    choice = {"fp32": Precision(fp32, fp32, False, False), "bf16": Precision(bf16, fp32, True, False),
              "fp16": Precision(fp16, fp32, True, True),
              "pure_bf16": Precision(bf16, bf16, False, False), "pure_fp16": Precision(fp16, fp16, False, False)}
    return choice[requested]


def keep_trainable_in(model, dtype: torch.dtype) -> None:
    """Trained weights in `dtype` (fp32 for mixed precision), whatever the base was loaded in (e.g. a reward head
    copied from a bf16 base)."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != dtype and p.dtype.is_floating_point:
            p.data = p.data.to(dtype)
