"""Row-confined attention honours every argument a model gives it (sliding window, soft-capping, attention sinks),
falls back to the exact packed path for anything it does not know, and still plugs into transformers through the
public AttentionInterface with the row boundaries it needs."""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.packing import IGNORE, Example, pack_rows
from tunesmith.model import attention
from tunesmith.model.attention import packed_exact_attention, use_varlen_attention, varlen_attention
from tunesmith.stages.base import causal_lm_loss

MATMUL_ROWS_ON_THIS_CPU = attention.matmul_rows  # bound before conftest pins it for each test
BOUNDS = torch.tensor([0, 11, 14, 22], dtype=torch.int32)  # rows of 11, 3 and 8 tokens


class Heads(torch.nn.Module):
    """What the eager functions read from an attention module: the GQA grouping, train/eval, gpt-oss's sinks."""

    def __init__(self, heads: int = 4, kv_heads: int = 2):
        super().__init__()
        self.num_key_value_groups = heads // kv_heads
        self.sinks = torch.nn.Parameter(torch.randn(heads))


class Gemma2Heads(Heads):
    pass


class GptOssHeads(Heads):
    pass


# The exact fallback calls the eager function of the module's own modeling file: Gemma 2's (soft-capping) or
# gpt-oss's (sinks).
Gemma2Heads.__module__ = "transformers.models.gemma2.modeling_gemma2"
GptOssHeads.__module__ = "transformers.models.gpt_oss.modeling_gpt_oss"


def qkv(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    make = lambda heads: torch.randn(1, heads, int(BOUNDS[-1]), 8, generator=g, dtype=torch.float64)
    return make(4), make(2), make(2)


def reference(module, q, k, v, **kwargs) -> torch.Tensor:
    """Each row alone through the gpt-oss/Gemma-2 eager formula with its own causal (and windowed) mask."""
    import importlib

    gemma2 = importlib.import_module("transformers.models.gemma2.modeling_gemma2")
    gpt_oss = importlib.import_module("transformers.models.gpt_oss.modeling_gpt_oss")
    edges = BOUNDS.tolist()
    out = []
    for s, e in itertools.pairwise(edges):
        n = e - s
        pos = torch.arange(n)
        visible = pos[None, :] <= pos[:, None]
        if kwargs.get("sliding_window"):
            visible &= pos[None, :] > pos[:, None] - kwargs["sliding_window"]
        mask = torch.zeros(n, n, dtype=q.dtype).masked_fill(~visible, torch.finfo(q.dtype).min)[None, None]
        if kwargs.get("s_aux") is not None:
            o, _ = gpt_oss.eager_attention_forward(module, q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], mask,
                                                   scaling=0.3)
        else:
            o, _ = gemma2.eager_attention_forward(module, q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], mask, scaling=0.3,
                                                  softcap=kwargs.get("softcap"))
        out.append(o)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("kwargs", [{}, {"sliding_window": 4}, {"softcap": 2.0}, {"sliding_window": 4, "softcap": 2.0},
                                    {"s_aux": "sinks"}, {"s_aux": "sinks", "sliding_window": 3}],
                         ids=["causal", "window", "softcap", "window+softcap", "sinks", "sinks+window"])
def test_every_argument_is_honoured_per_row(kwargs):
    torch.manual_seed(0)
    module = (GptOssHeads if "s_aux" in kwargs else Gemma2Heads)().double().eval()
    kwargs = {k: (module.sinks if v == "sinks" else v) for k, v in kwargs.items()}
    q, k, v = qkv()
    got, _ = varlen_attention(module, q, k, v, None, scaling=0.3, cu_seq_lens_q=BOUNDS, cu_seq_lens_k=BOUNDS,
                              position_ids=None, **kwargs)
    torch.testing.assert_close(got, reference(module, q, k, v, **kwargs))
    exact, _ = packed_exact_attention(module, q, k, v, BOUNDS, 0.0, 0.3, **kwargs)  # the fallback agrees as well
    torch.testing.assert_close(exact, got)


def test_an_unknown_argument_takes_the_exact_path(monkeypatch):
    calls = []
    real = attention.packed_exact_attention
    monkeypatch.setattr(attention, "packed_exact_attention", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    module = Gemma2Heads().double().eval()
    q, k, v = qkv()
    varlen_attention(module, q, k, v, None, scaling=0.3, cu_seq_lens_q=BOUNDS, sliding_window=4)
    assert not calls  # known arguments stay on the fast row-by-row path
    varlen_attention(module, q, k, v, None, scaling=0.3, cu_seq_lens_q=BOUNDS, some_future_bias=torch.ones(1))
    assert calls and "some_future_bias" in calls[0]


def test_transformers_hands_the_row_boundaries_to_the_registered_function(tiny_model_dir, monkeypatch):
    """The contract this module relies on: a model switched to NAME calls varlen_attention with cu_seq_lens_q."""
    from transformers import AutoModelForCausalLM

    seen = []
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    use_varlen_attention(model)
    assert model.config._attn_implementation == attention.NAME
    real = attention.varlen_attention
    from transformers import AttentionInterface

    AttentionInterface.register(attention.NAME, lambda *a, **kw: seen.append(kw.get("cu_seq_lens_q")) or real(*a, **kw))
    try:
        batch = pack_rows([Example([5, 6, 7, 8], [IGNORE, 6, 7, 8]), Example([9, 10], [IGNORE, 10])])
        with torch.no_grad():
            model(**batch.model_inputs(), use_cache=False)
    finally:
        AttentionInterface.register(attention.NAME, real)
    assert seen and all(torch.equal(b, batch.cu_seq_lens) for b in seen)


def test_gpt_oss_sinks_and_windows_train_exactly(tmp_path):
    """gpt-oss (attention sinks on every layer, a sliding window on alternate layers, experts): packed loss and
    gradients equal its own eager forward on each row alone."""
    from transformers import AutoModelForCausalLM, GptOssConfig

    config = GptOssConfig(vocab_size=300, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
                          num_experts_per_tok=2, sliding_window=4, max_position_embeddings=256, initializer_range=0.2,
                          layer_types=["sliding_attention", "full_attention"],
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "sinks" in name or name.endswith("bias"):
                p.normal_(0, 1)  # zero sinks would hide a dropped s_aux
    model.save_pretrained(tmp_path)
    g = torch.Generator().manual_seed(1)
    examples = []
    for length, prompt in ((13, 4), (5, 2), (9, 3)):
        ids = torch.randint(3, 300, (length,), generator=g).tolist()
        examples.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").train()
    want = 0.0
    for ex in examples:
        logits = ref(input_ids=torch.tensor([ex.input_ids]), use_cache=False).logits[0]
        loss = F.cross_entropy(logits[:-1], torch.tensor(ex.labels[1:]), ignore_index=IGNORE, reduction="sum")
        loss.backward()
        want += loss.item()
    packed = AutoModelForCausalLM.from_pretrained(tmp_path).train()
    use_varlen_attention(packed)
    got = causal_lm_loss(packed, pack_rows(examples))
    got.loss_sum.backward()
    assert got.loss_sum.item() == pytest.approx(want, rel=1e-5)
    for (name, a), (_, b) in zip(ref.named_parameters(), packed.named_parameters()):
        if a.grad is not None:
            assert (a.grad - b.grad).abs().max() <= 3e-5 * a.grad.abs().max(), name


def test_router_loss_is_added_like_the_model_adds_it():
    """A mixture-of-experts model configured with output_router_logits: our summed loss over one row, divided by its
    targets, is the model's own loss with labels (mean cross-entropy + router_aux_loss_coef x aux)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(vocab_size=300, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           output_router_logits=True, router_aux_loss_coef=0.5, max_position_embeddings=256)
    torch.manual_seed(0)
    model = MixtralForCausalLM(config).eval()
    ids = torch.randint(3, 300, (12,)).tolist()
    example = Example(ids, ids)
    with torch.no_grad():
        own = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids]), use_cache=False)
        ours = causal_lm_loss(model, pack_rows([example]))
        plain = causal_lm_loss(model, pack_rows([example]), chunked=False)
    assert own.aux_loss > 0
    assert ours.loss_sum.item() / ours.num_targets == pytest.approx(own.loss.item(), rel=1e-5)
    assert plain.loss_sum.item() == pytest.approx(ours.loss_sum.item(), rel=1e-5)


def documented_varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                           enable_gqa=False, **_unused):
    """torch.nn.attention.varlen.varlen_attn as its documentation describes it, row by row on any device: (T, H, D)
    in and out, key j seen from query i when i - left <= j <= i + right (-1: unbounded)."""
    assert torch.equal(cu_seq_q, cu_seq_k) and cu_seq_q.dtype == torch.int32
    assert max_q == max_k == int((cu_seq_q[1:] - cu_seq_q[:-1]).max())
    out = []
    for s, e in itertools.pairwise(cu_seq_q.tolist()):
        i, j = torch.arange(e - s)[:, None], torch.arange(e - s)[None, :]
        left, right = window_size
        seen = ((j >= i - left) if left >= 0 else torch.ones_like(i * j, dtype=torch.bool)) & \
            ((j <= i + right) if right >= 0 else True)
        rows = [t[s:e].transpose(0, 1)[None] for t in (q, k, v)]
        o = F.scaled_dot_product_attention(*rows, attn_mask=seen, scale=scale, enable_gqa=enable_gqa)
        out.append(o[0].transpose(0, 1))
    return torch.cat(out)


def older_varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    """The torch 2.9 signature: causal or not, the default scale, as many key heads as query heads."""
    assert q.shape[1] == k.shape[1], "no grouped-query attention in this signature"
    return documented_varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, window_size=(-1, 0 if is_causal else -1))


def row_loop(q, k, v, scaling, window):
    module = Heads().eval()
    got, _ = varlen_attention(module, q, k, v, None, scaling=scaling, cu_seq_lens_q=BOUNDS, sliding_window=window)
    return got


@pytest.mark.parametrize("window", [None, 4])
@pytest.mark.parametrize("kernel", [documented_varlen_attn, older_varlen_attn])
def test_flash_rows_maps_the_packed_batch_onto_torchs_varlen_kernel(kernel, window, monkeypatch):
    """The CUDA path's argument mapping, checked on the CPU against the kernel's documented behaviour (on a GPU,
    cuda_flash_works checks the real kernel against the row loop before it is used)."""
    monkeypatch.setattr("torch.nn.attention.varlen.varlen_attn", kernel)
    q, k, v = (t.float() for t in qkv())
    scaling = 8 ** -0.5 if kernel is older_varlen_attn else 0.3  # the older kernel has only the default scale
    if kernel is older_varlen_attn and window is not None:
        with pytest.raises(NotImplementedError):
            attention.flash_rows(q, k, v, BOUNDS, None, scaling, window)
        return
    got = attention.flash_rows(q, k, v, BOUNDS, int((BOUNDS[1:] - BOUNDS[:-1]).max()), scaling, window)
    torch.testing.assert_close(got, row_loop(q, k, v, scaling, window))


def test_cuda_flash_is_used_only_where_it_checks_out(monkeypatch):
    cpu = torch.device("cpu")  # stands in for a GPU: the check runs the kernel and the row loop on this device
    for kernel, works in [(documented_varlen_attn, True), (older_varlen_attn, False),  # no window: row loop
                          (lambda *a, **kw: documented_varlen_attn(*a, **kw) * 1.5, False)]:
        monkeypatch.setattr("torch.nn.attention.varlen.varlen_attn", kernel)
        attention.cuda_flash_works.cache_clear()
        assert attention.cuda_flash_works(cpu) is works
    monkeypatch.undo()
    attention.cuda_flash_works.cache_clear()
    assert attention.cuda_flash_works(cpu) is False  # torch's real kernel refuses a CPU: no error, the row loop
    attention.cuda_flash_works.cache_clear()


@pytest.mark.parametrize("scaling, window", [(None, None), (0.3, 4), (0.3, 20)])
def test_the_matmul_formula_is_causal_grouped_attention(scaling, window):
    """_matmul_attention in float64 equals SDPA with the same causal (windowed) mask: grouped heads, batch of 2."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, heads, 9, 8, generator=g, dtype=torch.float64) for heads in (6, 2, 2))
    mask = attention._visible(9, window, q.device)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=True)
    window = window if window is not None and window < 9 else None  # as _cpu_low_row passes it
    torch.testing.assert_close(attention._matmul_attention(q, k, v, scaling, window), expected)


@pytest.mark.parametrize("window", [None, 4])
def test_short_bf16_rows_on_a_cpu_with_fast_bf16_are_attended_by_matmuls(window, monkeypatch):
    """Rows up to MATMUL_ROWS take the matmul formula in bf16, longer ones the flash kernel; outputs and gradients
    follow fp32 within bf16's rounding."""
    monkeypatch.setattr(attention, "matmul_rows", lambda dtype: dtype == torch.bfloat16)
    monkeypatch.setattr(attention, "MATMUL_ROWS", 8)  # rows of 11, 3 and 8 tokens: the first takes the flash kernel
    lengths, real = [], attention._matmul_attention
    monkeypatch.setattr(attention, "_matmul_attention", lambda q, *a: lengths.append(q.shape[2]) or real(q, *a))
    module = Heads().train()
    exact_in = [t.float().requires_grad_() for t in qkv()]
    low_in = [t.detach().bfloat16().requires_grad_() for t in exact_in]
    weights = torch.randn(1, int(BOUNDS[-1]), 4, 8, generator=torch.Generator().manual_seed(2))
    results = []
    for inputs, context in ((exact_in, contextlib.nullcontext()), (low_in, torch.autocast("cpu", torch.bfloat16))):
        with context:
            out, _ = varlen_attention(module, *inputs, None, scaling=0.3, cu_seq_lens_q=BOUNDS, sliding_window=window)
        (out.float() * weights).sum().backward()
        results.append([out.float(), *(t.grad.float() for t in inputs)])
    assert lengths == [3, 8] and low_in[0].grad.dtype == torch.bfloat16
    for got, want in zip(results[1], results[0]):
        assert ((got - want).norm() / want.norm()) < 2e-2  # bf16 keeps 8 bits of mantissa: ~0.5% per value


@pytest.mark.parametrize("fast_bf16, longest, timed", [(True, 512, False), (True, 513, True), (False, 64, True)])
def test_the_flash_kernels_are_timed_only_where_a_run_uses_them(fast_bf16, longest, timed, monkeypatch):
    from tunesmith.model import loader

    monkeypatch.setattr(loader, "cpu_has_fast_bf16", lambda: fast_bf16)
    monkeypatch.setattr(attention, "matmul_rows", MATMUL_ROWS_ON_THIS_CPU)  # the product's answer, not conftest's
    calls = []
    monkeypatch.setattr(attention, "cpu_attention_dtype", lambda dtype: calls.append(dtype) or torch.float32)
    attention.plan_cpu_attention(torch.bfloat16, longest)
    attention.plan_cpu_attention(torch.float32, longest)  # fp32: nothing to decide
    assert calls == ([torch.bfloat16] if timed else [])
