"""torch's CPU kernel caches are bounded in every process that trains or decodes (tunesmith.kernel_caches)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunesmith.kernel_caches import DECODING_ENTRIES, TRAINING_ENTRIES

HELD_BY_KERNEL_CACHES = """
import ctypes, os, sys, torch
from tunesmith.kernel_caches import TRAINING_ENTRIES, bound_kernel_caches
if sys.argv[1] == "bounded":
    bound_kernel_caches(TRAINING_ENTRIES)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                              "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
weight = torch.randn(576, 576, dtype=torch.bfloat16)
torch.ones(8, 576, dtype=torch.bfloat16) @ weight
before = libc.mallinfo2().uordblks
for tokens in range(100, 300):  # every packed micro-batch has its own token count
    torch.ones(tokens, 576, dtype=torch.bfloat16) @ weight
print((libc.mallinfo2().uordblks - before) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_kernel_caches_stay_bounded_as_micro_batch_shapes_change():
    """A kernel cached per matmul shape, 1,024 of them by default, grew the heap at every training step."""
    def held_mb(mode: str) -> float:
        caches = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
        env = {k: v for k, v in os.environ.items() if k not in caches}
        out = subprocess.run([sys.executable, "-c", HELD_BY_KERNEL_CACHES, mode], capture_output=True, text=True,
                             env=env, check=True)
        return float(out.stdout.split()[-1])

    bounded, default = held_mb("bounded"), held_mb("default")
    if default < 20:
        pytest.skip(f"this CPU's bf16 matmuls keep no per-shape kernels ({default:.0f} MB after 200 shapes)")
    assert bounded < default / 2, f"{bounded:.0f} MB held after 200 shapes, {default:.0f} MB without the bound"


class Stop(Exception):
    pass


def test_training_and_decoding_bound_the_caches_before_anything_loads(tiny_model_dir, monkeypatch):
    from tunesmith.infer import loading
    from tunesmith.train import setup

    calls = []

    def then_stop(what):
        def record(*_args, **_kwargs):
            calls.append(what)
            raise Stop
        return record

    for module in (loading, setup):
        monkeypatch.setattr(module, "bound_kernel_caches",
                            lambda entries, m=module: calls.append((m.__name__, entries)))
    monkeypatch.setattr(loading, "load_run", then_stop("load_run"))
    monkeypatch.setattr(setup, "check_output_dir", then_stop("check_output_dir"))
    with pytest.raises(Stop):
        loading.load_for_inference(str(tiny_model_dir))
    with pytest.raises(Stop):
        setup.setup(None)
    assert calls == [("tunesmith.infer.loading", DECODING_ENTRIES), "load_run",
                     ("tunesmith.train.setup", TRAINING_ENTRIES), "check_output_dir"]
