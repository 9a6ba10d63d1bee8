"""Auto micro-batch and auto checkpointing follow free memory; explicit settings are kept as given."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.config import TrainConfig
from tunesmith.train.memory import CPU_TOKEN_CAP, activation_bytes_per_token, free_memory, plan_memory

GiB = 2**30


def _model():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(dataset="x", cutoff_len=512, per_device_batch_size=2, gradient_accumulation_steps=8, **kw)


def test_checkpointing_keeps_far_fewer_activations():
    config = _model().config
    plain = activation_bytes_per_token(config, torch.float32, False)
    recomputed = activation_bytes_per_token(config, torch.float32, True)
    assert plain == 4 * 2 * (20 * 32 + 10 * 64)
    assert recomputed < plain and activation_bytes_per_token(config, torch.bfloat16, False) == plain // 2


def test_auto_budget_grows_with_free_memory_up_to_one_step():
    model, cpu = _model(), torch.device("cpu")
    per_token = activation_bytes_per_token(model.config, torch.float32, False)
    small = plan_memory(_cfg(), model, cpu, free=int(700 * per_token / 0.6))
    assert 690 <= small.token_budget <= 700 and not small.checkpointing
    huge = plan_memory(_cfg(), model, torch.device("cuda"), free=1000 * GiB)
    assert huge.token_budget == 16 * 512  # a whole optimizer step; more could never be used
    assert plan_memory(_cfg(), model, cpu, free=1000 * GiB).token_budget == CPU_TOKEN_CAP  # a CPU gains nothing above


def test_processes_on_one_cpu_share_its_memory(monkeypatch):
    from tunesmith.train import memory

    model, cpu = _model(), torch.device("cpu")
    per_token = activation_bytes_per_token(model.config, torch.float32, False)
    monkeypatch.setattr(memory, "free_memory", lambda device: int(1400 * per_token / 0.6))
    assert plan_memory(_cfg(), model, cpu).token_budget == CPU_TOKEN_CAP  # one process: room for 1400, capped
    assert 690 <= plan_memory(_cfg(), model, cpu, processes=2).token_budget <= 700


def test_tight_memory_turns_checkpointing_on_and_keeps_one_row():
    model, cpu = _model(), torch.device("cpu")
    per_token = activation_bytes_per_token(model.config, torch.float32, False)
    plan = plan_memory(_cfg(), model, cpu, free=100 * per_token)
    assert plan.checkpointing and plan.token_budget == 512
    assert not plan_memory(_cfg(gradient_checkpointing=False), model, cpu, free=100 * per_token).checkpointing


def test_explicit_settings_win():
    plan = plan_memory(_cfg(max_tokens_per_batch=700, gradient_checkpointing=True), _model(), torch.device("cpu"),
                       free=1000 * GiB)
    assert plan.token_budget == 700 and plan.checkpointing


def test_free_memory_is_read_from_the_system():
    assert 0 < free_memory(torch.device("cpu")) < 2**50


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_heap_pages_go_back_to_the_system_before_training():
    """What loading freed (the fp32 weights before their bf16 copy) must not stay in the heap, fragmenting it."""
    from tunesmith.train.memory import release_free_memory

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    many = [torch.ones(25_000) for _ in range(4000)]  # 100 KB each: from the heap, not mmap; 400 MB
    keep = torch.ones(25_000)  # the heap's top stays in use, so free() alone cannot shrink it
    del many
    before = rss_mb()
    release_free_memory(torch.device("cpu"))
    assert rss_mb() < before - 200
    release_free_memory(torch.device("meta"))  # not a CPU: nothing to do
    assert keep.sum() == 25_000
