"""Cross-entropy through the vocabulary head in chunks, never holding the full logits.

The plain path projects every target position through the head at once: targets x vocabulary logits, kept for
backward, plus their log-softmax and their gradient. For Llama-3's 128k vocabulary and 1,500 target tokens that is
about 2.3 GB in fp32, more than a LoRA step needs for everything else on a small model. Here the head runs on
`chunk` positions at a time and the gradients of the hidden states (and of the head, when it trains) are computed
right there, in the forward pass, while each chunk's logits are still at hand; backward only scales them. Peak extra
memory is one chunk's logits; the FLOPs are those of the plain path (logits, d hidden, d head).

`stages.causal_lm_loss` uses it when the model's logits are a plain linear map of the final hidden states (the
model types in PLAIN_HEAD_TYPES); anything else (soft-capping, logit scaling, a biased head) keeps the plain path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Causal LMs whose forward is exactly `lm_head(final_norm(hidden))`: no logit soft-capping or scaling.
PLAIN_HEAD_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "smollm3"}
CHUNK = 1024


def _accumulation_dtype(hidden: torch.Tensor) -> torch.dtype:
    return torch.promote_types(hidden.dtype, torch.float32)  # bf16/fp16 logits are summed in fp32


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.weight_dtype = weight.dtype
        grad_h = torch.empty_like(hidden) if want_h else None
        acc = _accumulation_dtype(hidden)
        grad_w = torch.zeros_like(weight, dtype=acc) if want_w else None
        loss = torch.zeros((), dtype=acc, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits = (h @ weight.t()).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            loss += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if want_h or want_w:  # d(sum of CE)/d logits = softmax - one_hot(target)
                d_logits = torch.exp(logits.sub_(lse[:, None]))
                d_logits[torch.arange(len(t), device=t.device), t] -= 1.0
                d_logits = d_logits.to(hidden.dtype)
                if want_h:
                    grad_h[start:start + chunk] = d_logits @ weight
                if want_w:
                    grad_w += (d_logits.t() @ h).to(acc)
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None,
                (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None, None, None)


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk: int = CHUNK) -> torch.Tensor:
    """sum over rows of CE(hidden @ weight.T, targets); hidden (N, H), weight (V, H), targets (N,)."""
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        total = torch.zeros((), dtype=_accumulation_dtype(hidden), device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            logits = (hidden[start:start + chunk] @ weight.t()).to(total.dtype)
            total += F.cross_entropy(logits, targets[start:start + chunk], reduction="sum")
        return total
    return _ChunkedLinearCE.apply(hidden, weight, targets, chunk)


def output_head(model):
    """(decoder, head) of a causal LM (bare or inside a peft wrapper) whose logits are a plain head over the final
    hidden states; None when chunking does not apply and the plain path must be used."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(causal, "config", None)
    if config is None or getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return None
    head = causal.get_output_embeddings() if hasattr(causal, "get_output_embeddings") else None
    decoder = causal.get_decoder() if hasattr(causal, "get_decoder") else None
    if type(head) is not torch.nn.Linear or head.bias is not None or decoder is None:
        return None  # a quantized or adapted head, or a bias: let the model compute its own logits
    return decoder, head
