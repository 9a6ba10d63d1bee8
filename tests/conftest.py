"""Shared fixtures: the embedded model's tokenizer and a tiny random Llama built from a config (no downloads)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cpu_attention_in_fp32(monkeypatch):
    """In-process tests attend packed bf16 rows in fp32 on every CPU. The product attends short rows by bf16
    matmuls on a CPU with fast bf16 and times both flash kernels once per process for the rest
    (model.attention.matmul_rows, cpu_attention_dtype); a test's numbers must not depend on the CPU it runs on."""
    import torch

    from tunesmith.model import attention

    monkeypatch.setattr(attention, "matmul_rows", lambda dtype: False)
    monkeypatch.setattr(attention, "_measured_cpu_attention_dtype", lambda dtype: torch.float32)


@pytest.fixture(scope="session", autouse=True)
def _tests_convert_into_a_scratch_cache(tmp_path_factory):
    """GGUF files that tests export are converted (once each) into a throw-away model cache, not the user's: each
    has a new path, so each suite run used to leave one more model there. The embedded model's conversion, made once
    per machine, is linked in and shared."""
    from tunesmith.errors import ModelError
    from tunesmith.model.loader import EMBEDDED_NAME, cache_dir, resolve_model

    scratch = tmp_path_factory.mktemp("tunesmith-cache")
    (scratch / "models").mkdir()
    try:
        (scratch / "models" / EMBEDDED_NAME).symlink_to(Path(resolve_model(None)), target_is_directory=True)
    except ModelError:  # the embedded model is not installed: the tests that need it say so themselves
        pass
    with pytest.MonkeyPatch.context() as session:
        session.setenv("TUNESMITH_CACHE", str(scratch))  # in os.environ: CLI subprocesses inherit it
        assert cache_dir() == scratch
        yield


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The embedded SmolLM2 converted to safetensors (once per machine, ~10 s)."""
    from tunesmith.model.loader import resolve_model

    return Path(resolve_model(None))


@pytest.fixture(scope="session")
def tokenizer(embedded_dir):
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(embedded_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    """A 2-layer Llama with random weights and the SmolLM2 tokenizer, saved like any hub model folder."""
    from transformers import AutoTokenizer

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), AutoTokenizer.from_pretrained(embedded_dir))


def save_tiny_llama(out: Path, tok) -> Path:
    """Save a 2-layer random Llama sized for `tok`'s vocabulary, plus the tokenizer, into `out`. Width 64 and 4 heads
    of 16: the smallest shape every bitsandbytes 4-bit path accepts (input widths in multiples of 64, outputs in
    multiples of 32; see model.loader.check_quantizable)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def hybrid_model_dir(tmp_path_factory, embedded_dir) -> Path:
    """A 2-layer random Qwen3.5 (one linear-attention layer, one full-attention layer) with the SmolLM2 tokenizer:
    a model whose linear attention cannot keep packed rows apart on a CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    config = AutoConfig.for_model("qwen3_5_text", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  layer_types=["linear_attention", "full_attention"], linear_num_value_heads=4,
                                  linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                                  tie_word_embeddings=True, initializer_range=0.2, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-qwen3_5")
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


QA = [
    ("What are the support hours?", "Support is open from 8 AM to 9 PM every day."),
    ("Who founded Haneul Bikes?", "Haneul Bikes was founded by Yoon Seo-jin in 2019."),
    ("고객센터 운영 시간이 어떻게 되나요?", "고객센터는 매일 오전 8시부터 오후 9시까지 운영해요."),
    ("How much is a day pass?", "A day pass costs 12,000 won."),
    ("Can I bring my dog?", "Small pets are welcome in a closed carrier."),
    ("What is the deposit?", "The deposit is 50,000 won, refunded within three days."),
]


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    rows = [{"instruction": q, "output": a} for q, a in QA * 4]
    return write_jsonl(tmp_path / "faq.jsonl", rows)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None,
            stdin: str | None = None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout, input=stdin)


def network_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def fail_sampling_for_seed(monkeypatch, seed: int) -> None:
    """Make the engine's sampling raise for requests with this seed only: a fault inside one request of a batch."""
    from tunesmith.infer import engine as engine_module

    real_sample = engine_module.sample

    def flaky(logits, params, *args, **kw):
        if params.seed == seed:
            raise RuntimeError("injected fault in one request")
        return real_sample(logits, params, *args, **kw)

    monkeypatch.setattr(engine_module, "sample", flaky)
