"""The fast decoding path on a CPU for Llama-shaped models (Llama, SmolLM, Qwen2, Mistral without a sliding window).

Profiled (torch.profiler) on the 135M SmolLM2, a decoding step of the transformers forward is ~85% matrix-vector
products reading 540 MB of fp32 weights; the rest is Python, mask building and `DynamicCache` concatenations. This
path runs the same arithmetic with the model's own weights and rotary embedding straight from the layer list, with a
preallocated KV cache (kv.SlotCache), and:

- in "fp32" the very same operations as transformers' sdpa path, so a request decoded alone gives the same tokens;
- in "bf16", matrix weights converted once to bfloat16 and pre-packed for oneDNN, which halves the bytes read per
  token. Only worth it on CPUs with bf16 dot-product instructions (avx512_bf16, AMX); attention, norms and the
  residual stream stay in fp32, where CPU kernels are fast (bf16 attention on CPU is 5-30x slower).

torch.compile is not used: dynamo cannot trace the oneDNN-packed weights, and the packing is worth more here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunesmith.infer.kv import SlotCache

ARCHITECTURES = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"}
# Weights smaller than this sit in the CPU caches: decoding is not memory-bound and bf16 would only add rounding.
BF16_MIN_BYTES = 64 << 20


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


def fast_bf16_cpu() -> bool:
    """bf16 matrix products run at full speed only with avx512_bf16 or AMX; elsewhere they are emulated."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch: read the flags ourselves (Linux)
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return " avx512_bf16" in flags or " amx_bf16" in flags


def auto_dtype(model) -> str:
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    fp32 = next(model.parameters()).dtype == torch.float32
    return "bf16" if fp32 and weights >= BF16_MIN_BYTES and fast_bf16_cpu() and _packing_works() else "fp32"


def _packing_works() -> bool:
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(8, 8, dtype=torch.bfloat16), 1)
        torch.ops.mkldnn._linear_pointwise(torch.ones(1, 8, dtype=torch.bfloat16), w, None, "none", [], "")
        return True
    except (AttributeError, RuntimeError):
        return False


class Linear:
    """Projections that read the same input: the model's own fp32 weights (F.linear each, exactly like nn.Linear),
    or in bf16 one packed copy of them all stacked, so one product serves q, k and v (or gate and up)."""

    def __init__(self, modules: list, bf16: bool):
        self.bf16 = bf16
        self.sizes = [m.weight.shape[0] for m in modules]
        if bf16:
            weight = torch.cat([m.weight.detach() for m in modules]).to(torch.bfloat16)
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
            biases = [m.bias for m in modules]
            self.bias = None if biases[0] is None else torch.cat([b.detach() for b in biases]).to(torch.bfloat16)
        else:
            self.parts = [(m.weight, m.bias) for m in modules]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """All the projections side by side in the last dimension. bf16 in, bf16 out in bf16 mode (the caller
        converts where fp32 matters)."""
        if not self.bf16:
            outs = [F.linear(x, weight, bias) for weight, bias in self.parts]
            return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


class LlamaBackend:
    name = "fast"

    def __init__(self, model, dtype: str = "fp32"):
        self.model, self.dtype = model, dtype
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scaling = self.head_dim ** -0.5
        self.limit = getattr(config, "max_position_embeddings", None) or 2048
        bf16 = dtype == "bf16"
        # fp32 keeps transformers' own RMSNorm arithmetic (same tokens); bf16 has no such promise: one fused op.
        self.rms_norm = fused_rms_norm if bf16 else rms_norm
        self.matrix_dtype = torch.bfloat16 if bf16 else model.model.embed_tokens.weight.dtype
        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append((layer.input_layernorm, Linear([attn.q_proj, attn.k_proj, attn.v_proj], bf16),
                                Linear([attn.o_proj], bf16), layer.post_attention_layernorm,
                                Linear([mlp.gate_proj, mlp.up_proj], bf16), Linear([mlp.down_proj], bf16)))
        self.embed = model.model.embed_tokens
        self.norm = model.model.norm
        self.rotary = model.model.rotary_emb
        self.head = Linear([model.lm_head], bf16)

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
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        span = int(positions.max()) + 1  # cache columns any row attends to
        mask = None
        if not causal and batch > 1:  # each row sees its own length; SDPA's bool mask: True = attend
            mask = (torch.arange(span).unsqueeze(0) <= positions).view(batch, 1, 1, span)
        start = cache.lengths[rows[0]] if causal else None
        row_index, column = torch.tensor(rows), positions[:, 0]
        shape, matrix, fp32, norm = (batch, width, -1, self.head_dim), self.matrix_dtype, x.dtype, self.rms_norm
        split = ((self.heads + self.kv_heads) * self.head_dim, self.kv_heads * self.head_dim)
        single = not causal and batch == 1
        for i, (norm1, qkv, o_proj, norm2, gate_up, down) in enumerate(self.layers):
            residual = x
            qk, v = qkv(norm(x, norm1).to(matrix)).to(fp32).split(split, dim=-1)
            # Rotary embedding on q and k at once (elementwise, so the same numbers as one by one)
            qk = qk.reshape(shape).transpose(1, 2)
            qk = qk * cos + rotate_half(qk) * sin
            q, k, v = qk[:, :self.heads], qk[:, self.heads:], v.reshape(shape).transpose(1, 2)
            if single:  # one row decoding: a plain slice write, cheaper than indexing
                cache.keys[i, 0, :, column[0]] = k[0, :, 0]
                cache.values[i, 0, :, column[0]] = v[0, :, 0]
                out = self.attend(q, cache.keys[i, :1, :, :span], cache.values[i, :1, :, :span], None)
            elif causal:  # one row: the whole prompt at once, attending only to itself
                cache.keys[i, rows[0], :, start:start + width] = k[0]
                cache.values[i, rows[0], :, start:start + width] = v[0]
                out = F.scaled_dot_product_attention(q, k, v, is_causal=width > 1, scale=self.scaling,
                                                     enable_gqa=True)
            else:
                cache.keys[i, row_index, :, column] = k[:, :, 0]
                cache.values[i, row_index, :, column] = v[:, :, 0]
                out = self.attend(q, cache.keys[i, :batch, :, :span], cache.values[i, :batch, :, :span], mask)
            x = residual + o_proj(out.transpose(1, 2).reshape(batch, width, -1).to(matrix)).to(fp32)
            residual = x
            gate, up = gate_up(norm(x, norm2).to(matrix)).chunk(2, dim=-1)
            x = residual + down(F.silu(gate) * up).to(fp32)
        return self.head(norm(x[:, -1:], self.norm).to(matrix))[:, -1].float()

    def attend(self, q, keys, values, mask):
        if mask is None:  # one row: as transformers' sdpa path does without a mask
            return F.scaled_dot_product_attention(q, keys, values, scale=self.scaling, enable_gqa=True)
        # Several rows need a mask; then one query per row is grouped by KV head instead of repeating the keys.
        batch, heads, _, dim = q.shape
        grouped = q.reshape(batch, self.kv_heads, heads // self.kv_heads, dim)
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=self.scaling)
        return out.reshape(batch, heads, 1, dim)

    def keep(self, cache: SlotCache, rows: list[int]) -> SlotCache:
        cache.keep(rows)
        return cache

    def merge(self, a: SlotCache, b: SlotCache) -> SlotCache:
        a.append(b)
        return a

    def can_merge(self, cache: SlotCache) -> bool:
        return True


def rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """transformers' LlamaRMSNorm, step for step (in float32, then the weight)."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(dtype)


def fused_rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
