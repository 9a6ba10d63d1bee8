"""Mixed precision as HF Trainer users expect it, file order kept with shuffle=false, and the per-device choice."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import write_jsonl
from tunesmith.config import load_config
from tunesmith.data.dataset import DataSpec, load_items
from tunesmith.model.attention import _measured_cpu_attention_dtype  # bound before conftest pins it for each test
from tunesmith.train import precision as prec
from tunesmith.train.loop import rows_for_step, train


def losses(out) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "trainer_log.jsonl").read_text().splitlines()) if "loss" in r]


def test_shuffle_false_keeps_file_order_end_to_end(tmp_path):
    rows = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    splits = load_items(DataSpec(dataset=str(path), val_size=2, shuffle=False))
    assert [c.messages[0]["content"] for c in splits.train] == [f"question {i}" for i in range(8)]
    assert [c.messages[0]["content"] for c in splits.val] == ["question 8", "question 9"]  # from the end
    assert [rows_for_step(8, 3, step, seed=1, shuffle=False) for step in range(4)] == [
        [0, 1, 2], [3, 4, 5], [6, 7], [0, 1, 2]]
    shuffled = load_items(DataSpec(dataset=str(path), val_size=2, shuffle=True))
    assert [c.messages[0]["content"] for c in shuffled.train] != [f"question {i}" for i in range(8)]


@pytest.mark.parametrize("fast_bf16, device, expected", [(True, "cpu", "bf16 mixed"), (False, "cpu", "fp32")])
def test_auto_picks_bf16_only_where_it_is_fast(monkeypatch, fast_bf16, device, expected):
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert prec.choose_precision("auto", torch.device(device)).name == expected
    assert prec.choose_precision("bf16", torch.device("cpu")).name == "bf16 mixed"  # asked for: always honoured
    assert prec.choose_precision("pure_bf16", torch.device("cpu")).name == "pure bf16"
    assert prec.choose_precision("fp16", torch.device("cpu")).scaler


@pytest.mark.parametrize("instructions, bf16_s, fp32_s, expected", [
    (False, 0.1, 1.0, False),  # AVX2 only: never timed
    (True, 0.3, 1.0, True),  # AVX512-BF16 / AMX: bf16 3x faster
    (True, 75.0, 1.0, False),  # the flags promise bf16, but ONEDNN_MAX_CPU_ISA=AVX2 forbids it: emulated
    (True, 1.5, 1.0, False),  # ONEDNN_MAX_CPU_ISA=AVX512_CORE: AVX-512 without its bf16 instructions
])
def test_fast_bf16_needs_the_instructions_and_a_bf16_matmul_that_beats_fp32(instructions, bf16_s, fp32_s, expected,
                                                                            monkeypatch):
    from tunesmith.model import loader

    timed = []
    monkeypatch.setattr(loader, "_bf16_instructions", lambda: instructions)
    monkeypatch.setattr(loader, "_matmul_seconds",
                        lambda dtype: timed.append(dtype) or (bf16_s if dtype == torch.bfloat16 else fp32_s))
    assert loader.cpu_has_fast_bf16.__wrapped__() is expected
    assert bool(timed) is instructions


def test_the_bf16_probe_times_on_one_thread_and_gives_the_others_back(monkeypatch):
    """Two threads timed while other processes keep the cores busy wait for each other: bf16 once came out 100x
    slower than fp32 and the run trained in fp32. One thread is not held up so."""
    from tunesmith.model import loader

    seen = []
    monkeypatch.setattr(loader, "fastest_seconds", lambda run, repeats: seen.append(torch.get_num_threads()) or 1.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader._matmul_seconds(torch.bfloat16)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_bf16_probe_runs_wherever_it_is_first_asked():
    """Its first caller may be a forward pass: without gradients, in inference mode or under autocast."""
    from tunesmith.model.loader import _matmul_seconds

    for context in (torch.no_grad(), torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16)):
        with context:
            assert all(0 < _matmul_seconds(dtype, size=8, repeats=1) < float("inf")
                       for dtype in (torch.float32, torch.bfloat16))


def test_bf16_mixed_tracks_fp32_far_closer_than_pure_bf16(tiny_model_dir, alpaca_file, tmp_path):
    curves = {}
    for dtype in ("fp32", "bf16", "pure_bf16"):
        out = tmp_path / dtype
        train(load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}",
                                 "method=full", "max_steps=12", "per_device_batch_size=4",
                                 "gradient_accumulation_steps=1", "learning_rate=2e-3", "lr_scheduler=constant",
                                 f"dtype={dtype}"]), show_progress=False)
        curves[dtype] = losses(out)
    mixed = max(abs(a - b) for a, b in zip(curves["bf16"], curves["fp32"]))
    pure = max(abs(a - b) for a, b in zip(curves["pure_bf16"], curves["fp32"]))
    assert curves["fp32"][-1] < curves["fp32"][0]
    assert mixed < 0.05 and mixed * 3 < pure, (mixed, pure)  # pure bf16 loses small AdamW updates to rounding


def test_mixed_precision_keeps_trainable_weights_fp32_and_the_frozen_base_in_bf16(tiny_model_dir, alpaca_file,
                                                                                  tmp_path):
    from tunesmith.train.setup import setup

    s = setup(load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={tmp_path / 'r'}",
                                 "max_steps=1", "dtype=bf16"]))
    trained = {p.dtype for p in s.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in s.model.parameters() if not p.requires_grad}
    assert trained == {torch.float32} and frozen == {torch.bfloat16}
    assert all(v.dtype == torch.float32 for group in s.optimizer.param_groups for v in group["params"])


def test_fp16_with_loss_scaling_trains_without_overflow(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "fp16"
    result = train(load_config(None, [f"model={tiny_model_dir}", f"dataset={alpaca_file}", f"output_dir={out}",
                                      "max_steps=8", "per_device_batch_size=4", "gradient_accumulation_steps=1",
                                      "learning_rate=1e-2", "dtype=fp16"]), show_progress=False)
    assert all(torch.isfinite(torch.tensor(loss)) for loss in result.losses)
    assert result.losses[-1] < result.losses[0]
    done = json.loads((out / "trainer_log.jsonl").read_text().splitlines()[-1])
    assert done["precision"] == "fp16 mixed"


def test_the_forward_context_skips_peft_input_casts_without_changing_a_number(tiny_model_dir):
    """Under autocast peft's cast of each adapter input to fp32 is undone at once; switching it off (for speed)
    must give the very same loss and gradients, and must end with the context."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    ids = torch.randint(0, 100, (1, 12))
    mixed = prec.choose_precision("bf16", torch.device("cpu"))
    lora = next(m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))
    results, casting = [], []
    for context in (torch.autocast("cpu", dtype=torch.bfloat16), mixed.autocast(torch.device("cpu"), model)):
        model.zero_grad()
        with context:
            loss = model(input_ids=ids, labels=ids).loss
            casting.append(lora.cast_input_dtype_enabled)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    assert casting == [True, False]
    assert lora.cast_input_dtype_enabled  # restored: inference outside autocast still casts


def test_cpu_attention_in_low_precision_runs_in_fp32_where_bf16_is_not_faster(monkeypatch):
    """bf16 inputs on a CPU whose bf16 attention is not clearly faster: the row-confined attention computes in fp32
    (more exact) and hands back bf16."""
    from tunesmith.model import attention
    from tunesmith.model.attention import varlen_attention

    monkeypatch.setattr(attention, "cpu_attention_dtype", lambda dtype: torch.float32)

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 8, generator=g) for _ in range(3))
    bounds = torch.tensor([0, 6, 10])
    module = torch.nn.Module()
    module.num_key_value_groups = 1
    exact, _ = varlen_attention(module, q, k, v, None, cu_seq_lens_q=bounds)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = varlen_attention(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), None, cu_seq_lens_q=bounds)
    assert low.dtype == torch.bfloat16
    rounded, _ = varlen_attention(module, q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), None,
                                  cu_seq_lens_q=bounds)
    assert torch.equal(low, rounded.bfloat16())  # fp32 arithmetic on the bf16 inputs
    torch.testing.assert_close(low.float(), exact, atol=3e-2, rtol=3e-2)


def test_cpu_attention_in_bf16_where_the_cpu_does_it_faster(monkeypatch):
    """A CPU whose bf16 kernel wins (AMX): packed rows are attended in bf16 itself, close to the fp32 result, and
    gradients flow."""
    from tunesmith.model import attention

    monkeypatch.setattr(attention, "cpu_attention_dtype", lambda dtype: dtype)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 8, generator=g) for _ in range(3))
    bounds = torch.tensor([0, 6, 10])
    module = torch.nn.Module()
    exact, _ = attention.varlen_attention(module, q, k, v, None, cu_seq_lens_q=bounds)
    low_in = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = attention.varlen_attention(module, *low_in, None, cu_seq_lens_q=bounds)
    rounded, _ = attention.varlen_attention(module, *(t.detach().float() for t in low_in), None, cu_seq_lens_q=bounds)
    assert low.dtype == torch.bfloat16
    assert not torch.equal(low, rounded.bfloat16())  # not the fp32 arithmetic of the other path
    assert torch.allclose(low.float(), exact, atol=3e-2)
    low.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in low_in)


@pytest.mark.parametrize("fast_bf16, fp32_s, bf16_s, dtype, expected", [
    (False, 1.0, 0.1, torch.bfloat16, torch.float32),  # emulated bf16: never timed, never chosen
    (True, 1.0, 0.5, torch.bfloat16, torch.bfloat16),  # AMX-like: bf16 twice as fast
    (True, 1.0, 0.8, torch.bfloat16, torch.float32),  # a near tie keeps the more exact fp32
    (True, 1.0, 1.9, torch.bfloat16, torch.float32),  # AVX512-BF16 without AMX: bf16 slower
    (True, 1.0, 0.1, torch.float16, torch.float32),  # fp16 on a CPU: fp32
])
def test_cpu_attention_dtype_follows_the_timing_of_both_kernels(monkeypatch, fast_bf16, fp32_s, bf16_s, dtype,
                                                                expected):
    from tunesmith.model import attention, loader

    monkeypatch.setattr(loader, "cpu_has_fast_bf16", lambda: fast_bf16)
    timed = []
    monkeypatch.setattr(attention, "_row_seconds",
                        lambda d: timed.append(d) or (fp32_s if d == torch.float32 else bf16_s))
    assert _measured_cpu_attention_dtype.__wrapped__(dtype) == expected
    assert timed == ([torch.float32, torch.bfloat16] if fast_bf16 and dtype == torch.bfloat16 else [])
    assert attention.cpu_attention_dtype(torch.float32) == torch.float32  # fp32 models: nothing to decide


def test_the_attention_timing_runs_both_kernels_wherever_it_is_first_needed():
    """It first runs inside a model's forward: perhaps without gradients, in inference mode or under autocast."""
    from tunesmith.model.attention import _row_seconds

    for dtype in (torch.float32, torch.bfloat16):
        for context in (torch.no_grad(), torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16)):
            with context:
                seconds = _row_seconds(dtype, length=16, repeats=1)
            assert 0 < seconds < float("inf")
