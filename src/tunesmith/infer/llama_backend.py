"""The fast decoding path on a CPU for Llama-shaped models (Llama, SmolLM, Qwen2, Mistral without a sliding window).

Profiled (torch.profiler) on the 135M SmolLM2, a decoding step of the transformers forward is ~85% matrix-vector
products reading 540 MB of fp32 weights; the rest is Python, mask building and `DynamicCache` concatenations. This
path runs the same arithmetic with the model's own weights and rotary embedding straight from the layer list, with a
preallocated KV cache (kv.SlotCache), and:

- in "fp32" the very same operations as transformers' sdpa path, so a request decoded alone gives the same tokens;
- in "bf16", matrix weights converted once to bfloat16 and pre-packed for oneDNN, which halves the bytes read per
  token. Only worth it on CPUs with bf16 dot-product instructions (avx512_bf16, AMX); attention, norms and the
  residual stream stay in fp32, where CPU kernels are fast (bf16 attention on CPU is 5-30x slower);
- in "int8", matrix weights as int8 with one bf16 scale per output row (weight-only: the inputs stay bf16), a
  quarter of the fp32 bytes, for steps of up to INT8_MAX_ROWS tokens. Larger batches and prompts are compute-bound,
  where the weight-only int8 kernel is 2-3x slower than oneDNN's bf16: they use the bf16 copy. `auto` picks int8
  only for weights read from a GGUF file quantized to 8 bits or fewer, which never held more precision than that:
  on SmolLM2-135M from a Q8_0 file, 95% of greedy next tokens equal fp32's (bf16: 99%). int8 inputs as well
  (fbgemm's dynamic quantization, one scale per row of inputs) were faster still, but agreed on 91% only: these
  models' activations have outlier channels.

torch.compile is not used: dynamo cannot trace the oneDNN-packed weights, and the packing is worth more here.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from tunesmith.infer.kv import SlotCache
from tunesmith.model.loader import cpu_has_fast_bf16

ARCHITECTURES = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"}
# Weights smaller than this sit in the CPU caches: decoding is not memory-bound and bf16 would only add rounding.
BF16_MIN_BYTES = 64 << 20
FLOAT_GGUF_TYPES = {"F32", "F16", "BF16", "F64"}
DTYPES = ("fp32", "bf16", "int8")
INT8_MAX_ROWS = 3  # measured crossover on a 2-core avx512_bf16 CPU: int8 12.0 vs bf16 14.5 ms at 1 row, equal at 4


def supports(model) -> bool:
    """A plain (not peft-wrapped) Llama-shaped model on a CPU, with full attention and SiLU MLPs."""
    config = getattr(model, "config", None)
    if type(model).__name__ not in ARCHITECTURES or config is None:
        return False
    try:
        device = next(model.parameters()).device
        layer = model.model.layers[0]
        parts = (layer.self_attn.q_proj, layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.down_proj,
                 layer.input_layernorm.variance_epsilon, model.model.rotary_emb, model.lm_head)
    except (AttributeError, IndexError, StopIteration):
        return False
    windowed = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return (device.type == "cpu" and all(p is not None for p in parts) and config.hidden_act == "silu"
            and not windowed and not hasattr(layer.self_attn, "q_norm"))


def auto_dtype(model, quantized_from: str | None = None) -> str:
    """`quantized_from`: the GGUF quantization the weights were read from (loader.gguf_weights), if any."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    fp32 = next(model.parameters()).dtype == torch.float32
    if not (fp32 and weights >= BF16_MIN_BYTES and cpu_has_fast_bf16()):
        return "fp32"
    if quantized_from and quantized_from not in FLOAT_GGUF_TYPES and int8_fits(model):
        return "int8"
    return "bf16" if _packing_works() else "fp32"


def int8_fits(model) -> bool:
    """torch 2.13's weight-only int8 kernel crashes (K=8) or returns NaN (K=24, 40) for input widths that are not
    multiples of 16 with several rows; real models' widths are multiples of 64, the only ones used here."""
    config = model.config
    widths = (config.hidden_size, config.intermediate_size, config.num_attention_heads * _head_dim(config))
    return all(width % 64 == 0 for width in widths) and _int8_works()


@functools.cache  # a property of this torch build and CPU: probed once
def _int8_works() -> bool:
    try:
        x = torch.ones(INT8_MAX_ROWS, 64, dtype=torch.bfloat16)
        out = torch.ops.aten._weight_int8pack_mm(x, torch.ones(8, 64, dtype=torch.int8),
                                                 torch.ones(8, dtype=torch.bfloat16))
        return bool((out == 64).all())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def _packing_works() -> bool:
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(8, 8, dtype=torch.bfloat16), 1)
        torch.ops.mkldnn._linear_pointwise(torch.ones(1, 8, dtype=torch.bfloat16), w, None, "none", [], "")
        return True
    except (AttributeError, RuntimeError):
        return False


class Linear:
    """Projections that read the same input: the model's own fp32 weights (F.linear each, exactly like nn.Linear),
    or in bf16 / int8 one copy of them all stacked, so one product serves q, k and v (or gate and up)."""

    def __init__(self, modules: list, dtype: str):
        self.dtype = dtype
        if dtype == "fp32":
            self.parts = [(m.weight, m.bias) for m in modules]
            return
        weight = torch.cat([m.weight.detach() for m in modules])
        biases = [m.bias for m in modules]
        self.bias = None if biases[0] is None else torch.cat([b.detach() for b in biases]).to(torch.bfloat16)
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.to(torch.bfloat16), 1)
        if dtype == "int8":  # symmetric per output row; rows rounded against the bf16 scale the kernel will use
            weight = weight.float()
            self.scale = (weight.abs().amax(1).clamp(min=1e-12) / 127).to(torch.bfloat16)
            self.int8 = (weight / self.scale.float()[:, None]).round_().clamp_(-127, 127).to(torch.int8)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """All the projections side by side in the last dimension. bf16 in, bf16 out in bf16 and int8 modes (the
        caller converts where fp32 matters)."""
        if self.dtype == "fp32":
            outs = [F.linear(x, weight, bias) for weight, bias in self.parts]
            return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        if self.dtype == "bf16" or x.numel() > INT8_MAX_ROWS * x.shape[-1]:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        out = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), self.int8, self.scale)
        out = out.reshape(*x.shape[:-1], -1)
        return out if self.bias is None else out + self.bias


class LlamaBackend:
    name = "fast"

    def __init__(self, model, dtype: str = "fp32"):
        self.model, self.dtype = model, dtype
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = _head_dim(config)
        self.scaling = self.head_dim ** -0.5
        self.limit = getattr(config, "max_position_embeddings", None) or 2048
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: one of {', '.join(DTYPES)}")
        if dtype == "int8" and not int8_fits(model):
            raise ValueError("int8 decoding needs layer widths that are multiples of 64 and torch's weight-only int8 "
                             "kernel; use bf16 or fp32")
        exact = dtype == "fp32"
        # fp32 keeps transformers' own RMSNorm arithmetic (same tokens); bf16 and int8 make no such promise: one
        # fused op.
        self.rms_norm = rms_norm if exact else fused_rms_norm
        self.matrix_dtype = model.model.embed_tokens.weight.dtype if exact else torch.bfloat16
        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append((layer.input_layernorm, Linear([attn.q_proj, attn.k_proj, attn.v_proj], dtype),
                                Linear([attn.o_proj], dtype), layer.post_attention_layernorm,
                                Linear([mlp.gate_proj, mlp.up_proj], dtype), Linear([mlp.down_proj], dtype)))
        self.embed = model.model.embed_tokens
        self.norm = model.model.norm
        self.rotary = model.model.rotary_emb
        self.head = Linear([model.lm_head], dtype)

    def new_cache(self) -> SlotCache:
        weight = self.model.model.embed_tokens.weight
        return SlotCache(len(self.layers), self.kv_heads, self.head_dim, weight.dtype, weight.device, self.limit)

    @torch.no_grad()
    def prefill(self, prompts: list[list[int]]) -> tuple[SlotCache, torch.Tensor]:
        """Each prompt alone (no padding), into its own row."""
        cache = self.new_cache()
        logits = [self.prefill_row(cache, prompt) for prompt in prompts]
        return cache, torch.cat(logits)

    @torch.no_grad()
    def prefill_row(self, cache: SlotCache, prompt: list[int]) -> torch.Tensor:
        if len(prompt) > self.limit:
            raise ValueError(f"the prompt has {len(prompt)} tokens; the model reads at most {self.limit}")
        row = cache.add_row(len(prompt))
        try:
            ids = torch.tensor([prompt])
            positions = torch.arange(len(prompt)).unsqueeze(0)
            logits = self._forward(cache, ids, positions, [row], causal=True)
        except BaseException:
            cache.lengths.pop()  # the row was never filled: leave the cache as it was
            raise
        cache.lengths[row] = len(prompt)
        return logits

    @torch.no_grad()
    def decode(self, cache: SlotCache, tokens: list[int]) -> torch.Tensor:
        lengths = cache.lengths
        if max(lengths) >= self.limit:
            raise ValueError(f"the context is full ({self.limit} tokens)")
        cache.reserve(len(tokens), max(lengths) + 1)
        positions = torch.tensor(lengths).unsqueeze(1)
        logits = self._forward(cache, torch.tensor(tokens).unsqueeze(1), positions, list(range(len(tokens))),
                               causal=False)
        cache.lengths = [n + 1 for n in lengths]
        return logits

    def _forward(self, cache: SlotCache, ids: torch.Tensor, positions: torch.Tensor, rows: list[int],
                 causal: bool) -> torch.Tensor:
        """ids, positions: (B, L). Prefill passes one row (L = prompt length); decoding passes B rows of one token."""
        batch, width = ids.shape
        x = self.embed(ids)
        cos, sin = self.rotary(x, positions)
        # rotate_half(x) * sin == x.roll(half) * sin with the first half of sin negated: one op instead of four
        half = self.head_dim // 2
        cos, sin = cos.unsqueeze(1), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1).unsqueeze(1)
        attention = self._prefill_attention(cache, rows[0], width) if causal else \
            self._decode_attention(cache, positions)
        shape, matrix, fp32, norm = (batch, width, -1, self.head_dim), self.matrix_dtype, x.dtype, self.rms_norm
        split = ((self.heads + self.kv_heads) * self.head_dim, self.kv_heads * self.head_dim)
        for i, (norm1, qkv, o_proj, norm2, gate_up, down) in enumerate(self.layers):
            residual = x
            qk, v = qkv(norm(x, norm1).to(matrix)).to(fp32).split(split, dim=-1)
            # Rotary embedding on q and k at once (elementwise, so the same numbers as one by one)
            qk = qk.reshape(shape).transpose(1, 2)
            qk = qk * cos + qk.roll(half, -1) * sin
            out = attention(i, qk[:, :self.heads], qk[:, self.heads:], v.reshape(shape).transpose(1, 2))
            x = residual + o_proj(out.transpose(1, 2).reshape(batch, width, -1).to(matrix)).to(fp32)
            residual = x
            gate, up = gate_up(norm(x, norm2).to(matrix)).chunk(2, dim=-1)
            x = residual + down(F.silu(gate) * up).to(fp32)
        return self.head(norm(x[:, -1:], self.norm).to(matrix))[:, -1].float()

    def _prefill_attention(self, cache: SlotCache, row: int, width: int):
        """One row: the whole prompt at once, attending only to itself."""
        start = cache.lengths[row]
        keys, values = cache.keys[:, row, :, start:start + width], cache.values[:, row, :, start:start + width]

        def attention(i, q, k, v):
            keys[i], values[i] = k[0], v[0]
            return F.scaled_dot_product_attention(q, k, v, is_causal=width > 1, scale=self.scaling, enable_gqa=True)
        return attention

    def _decode_attention(self, cache: SlotCache, positions: torch.Tensor):
        """Rows 0..B-1, one new token each. The cache views are taken once per step for every layer: indexing the
        cache tensor afresh in each layer cost as much as the attention itself."""
        batch = positions.shape[0]
        span = int(positions.max()) + 1  # cache columns any row attends to
        keys, values = cache.keys[:, :batch, :, :span], cache.values[:, :batch, :, :span]
        if batch == 1:  # one row: a plain slice write, cheaper than indexing, and no mask
            column = int(positions[0, 0])
            new_keys, new_values = cache.keys[:, 0, :, column], cache.values[:, 0, :, column]

            def attention(i, q, k, v):
                new_keys[i], new_values[i] = k[0, :, 0], v[0, :, 0]
                # as transformers' sdpa path does without a mask
                return F.scaled_dot_product_attention(q, keys[i], values[i], scale=self.scaling, enable_gqa=True)
            return attention
        # Each row sees its own length (SDPA's bool mask: True = attend); one query per row is grouped by KV head
        # instead of repeating the keys.
        mask = (torch.arange(span).unsqueeze(0) <= positions).view(batch, 1, 1, span)
        rows, column = torch.arange(batch), positions[:, 0]
        group = self.heads // self.kv_heads

        def attention(i, q, k, v):
            cache.keys[i, rows, :, column], cache.values[i, rows, :, column] = k[:, :, 0], v[:, :, 0]
            grouped = q.reshape(batch, self.kv_heads, group, self.head_dim)
            out = F.scaled_dot_product_attention(grouped, keys[i], values[i], attn_mask=mask, scale=self.scaling)
            return out.reshape(batch, self.heads, 1, self.head_dim)
        return attention

    def keep(self, cache: SlotCache, rows: list[int]) -> SlotCache:
        cache.keep(rows)
        return cache

    def merge(self, a: SlotCache, b: SlotCache) -> SlotCache:
        a.append(b)
        return a

    def can_merge(self, cache: SlotCache) -> bool:
        return True


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """transformers' LlamaRMSNorm, step for step (in float32, then the weight)."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(dtype)


def fused_rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)
