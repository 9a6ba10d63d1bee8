"""torch's CPU kernel caches are bounded in every process that trains or decodes (tunesmith.kernel_caches)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


# --- torch.compile's on-disk cache, one folder per CPU kind ------------------------------------------------------

def test_compile_cache_gets_a_folder_per_cpu_kind_unless_the_user_chose_one(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    from tunesmith.kernel_caches import _default_compile_cache, compile_cache_per_cpu

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert _default_compile_cache() == Path(os.path.abspath(default_cache_dir()))  # where inductor caches untold
    here = compile_cache_per_cpu()
    assert here.parent == _default_compile_cache() and here.name.startswith("cpu-")
    assert Path(cache_dir()) == here  # inductor takes it
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(_default_compile_cache()))  # as inductor sets it on first use
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    held_to_avx2 = compile_cache_per_cpu()
    assert held_to_avx2.parent == here.parent and held_to_avx2 != here
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_per_cpu() is None and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


COMPILED_PACKED_STEPS = """
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from tunesmith.model.attention import use_varlen_attention
from tunesmith.train.setup import compile_layers
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=160, num_attention_heads=4,
                                     num_key_value_heads=2, num_hidden_layers=1, vocab_size=100))
use_varlen_attention(model)  # its row loop breaks the compiled graph in two
compile_layers(model)
for lengths in ([37, 60, 5], [101, 3], [19, 44, 71]):
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    out = model(input_ids=torch.randint(0, 100, (1, sum(lengths))), cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                position_ids=torch.cat([torch.arange(n) for n in lengths])[None])
    loss = out.logits.float().square().mean()
    assert torch.isfinite(loss), loss
    loss.backward()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the default cache under the temp folder")
def test_compiled_training_runs_after_another_cpu_kind_filled_the_cache(tmp_path):
    """Kernels inductor cached while torch was held to AVX2 corrupted the heap when read back by an AVX-512 process
    (`free(): invalid pointer`), and the other way round gave a NaN loss. Run both in turn on one temp folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "ATEN_CPU_CAPABILITY")}
    env["TMPDIR"] = str(tmp_path)
    for held in ({"ATEN_CPU_CAPABILITY": "avx2"}, {}, {"ATEN_CPU_CAPABILITY": "avx2"}):
        done = subprocess.run([sys.executable, "-c", COMPILED_PACKED_STEPS], env={**env, **held}, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (held, done.stderr[-2000:])
