"""Cross-entropy through the vocabulary head in chunks, never holding the full logits.

The plain path projects every target position through the head at once: targets x vocabulary logits, kept for
backward, plus their log-softmax and their gradient. For Llama-3's 128k vocabulary and 1,500 target tokens that is
about 2.3 GB in fp32, more than a LoRA step needs for everything else on a small model. Here the head runs on
`chunk` positions at a time and the gradients of the hidden states (and of the head, when it trains) are computed
right there, in the forward pass, while each chunk's logits are still at hand; backward only scales them. Peak extra
memory is one chunk's logits (fp32, plus a copy in the hidden states' dtype under mixed precision); the FLOPs are
those of the plain path (logits, d hidden, d head).

`stages.causal_lm_loss` uses it when the model's logits are the final hidden states through a bias-free linear head,
optionally scaled (`logit_scale`, `logits_scaling`) and soft-capped (`final_logit_softcapping`: Gemma 2/3). Which
of these applies is read from the model's config and then checked on the model itself, once: a 4-token forward
whose logits must equal the chunked head's. A model whose logits are anything else (a biased or quantized head,
an unknown transform) keeps the plain path, so no family depends on an allow-list being up to date.

Mixture-of-experts models whose config asks for it (`output_router_logits`) get their router load-balancing loss
added exactly as their own forward adds it with labels: `router_aux_loss_coef x aux`, per loss unit of the
micro-batch (`router_loss`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)
CHUNK = 1024
# On a CPU a 256-row chunk runs as fast as 1,024 (49k vocabulary, 2-core avx512_bf16: 1.58 vs 1.63 s for 4,096
# targets) with a quarter of the buffers: 75 MB instead of 300 MB of peak memory.
CPU_CHUNK = 256
PROBE_TOKENS = 4
_checked: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def _accumulation_dtype(hidden: torch.Tensor) -> torch.dtype:
    return torch.promote_types(hidden.dtype, torch.float32)  # bf16/fp16 logits are summed in fp32


def _logits(h: torch.Tensor, weight: torch.Tensor, acc, scale: float, softcap: float | None):
    """(logits in `acc`, d logits / d raw logits or None): raw = h @ W.T, logits = softcap(raw * scale)."""
    logits = (h @ weight.t()).to(acc)
    if scale != 1.0:
        logits = logits * scale
    if softcap is None:
        return logits, None
    capped = torch.tanh(logits / softcap)
    return capped * softcap, (1 - capped * capped) * scale  # tanh' chained with the scale


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, scale: float,
                softcap: float | None):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.weight_dtype = weight.dtype
        grad_h = torch.empty_like(hidden) if want_h else None
        acc = _accumulation_dtype(hidden)
        grad_w = torch.zeros_like(weight, dtype=acc) if want_w else None
        loss = torch.zeros((), dtype=acc, device=hidden.device)
        # Two chunk-sized buffers reused by every chunk: the vocabulary-wide passes below (shift, exp, sum,
        # normalise) run in place, each once. Fresh tensors per pass cost more than the arithmetic on a CPU: the
        # kernel zero-fills every new page (a 1024-row chunk of a 49k vocabulary is 200 MB).
        rows = min(chunk, hidden.shape[0])
        shifted = torch.empty(rows, weight.shape[0], dtype=acc, device=hidden.device)
        grad_in = shifted if hidden.dtype == acc else torch.empty_like(shifted, dtype=hidden.dtype)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            n = len(t)
            if scale == 1.0 and softcap is None:  # the logits as the matmul gives them; upcast in the shift below
                logits, inner = h @ weight.t(), None
            else:
                logits, inner = _logits(h, weight, acc, scale, softcap)
            target = logits.gather(1, t[:, None]).to(acc)
            top = logits.amax(dim=-1, keepdim=True).to(acc)
            # In place and in one dtype each: CPU kernels given mixed dtypes (or an `out` of another dtype) make a
            # converted temporary first, an extra pass over the chunk.
            e = shifted[:n].copy_(logits).sub_(top).exp_()
            del logits
            total = e.sum(dim=-1, keepdim=True)
            loss += (top + total.log() - target).sum()  # log-sum-exp minus the target's logit
            if want_h or want_w:  # d(sum of CE)/d logits = softmax - one_hot(target) = (e - total * one_hot) / total
                e[torch.arange(n, device=t.device), t] -= total[:, 0]
                factor = total.reciprocal()
                if inner is not None:  # soft-capping: its derivative (the logit scale included)
                    e *= inner
                elif scale != 1.0:
                    factor *= scale
                e.mul_(factor)
                d_logits = e if grad_in is shifted else grad_in[:n].copy_(e)
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
                (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None, None, None, None, None)


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk: int | None = None, scale: float = 1.0, softcap: float | None = None
                                 ) -> torch.Tensor:
    """sum over rows of CE(logits, targets) with logits = softcap(hidden @ weight.T * scale); hidden (N, H), weight
    (V, H), targets (N,). softcap(x) = tanh(x / cap) * cap, or x when `softcap` is None. `chunk`: rows per chunk
    (default: CPU_CHUNK on a CPU, else CHUNK)."""
    chunk = chunk or (CPU_CHUNK if hidden.device.type == "cpu" else CHUNK)
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        total = torch.zeros((), dtype=_accumulation_dtype(hidden), device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            logits, _ = _logits(hidden[start:start + chunk], weight, total.dtype, scale, softcap)
            total += F.cross_entropy(logits, targets[start:start + chunk], reduction="sum")
        return total
    return _ChunkedLinearCE.apply(hidden, weight, targets, chunk, scale, softcap)


@dataclass
class OutputHead:
    """How a causal LM turns its final hidden states into logits: `softcap(head(hidden) * scale)`."""

    decoder: torch.nn.Module
    head: torch.nn.Linear
    scale: float = 1.0
    softcap: float | None = None

    def loss_sum(self, hidden: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        return chunked_linear_cross_entropy(hidden, self.head.weight, targets, chunk, self.scale, self.softcap)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return _logits(hidden, self.head.weight, _accumulation_dtype(hidden), self.scale, self.softcap)[0]


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _transform(config) -> tuple[float, float | None]:
    """(scale, softcap) from the config attributes the families use: Cohere multiplies by `logit_scale`, Granite
    divides by `logits_scaling`, Gemma 2/3 soft-cap with `final_logit_softcapping`."""
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    if getattr(config, "logits_scaling", None):
        scale /= float(config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)
    return scale, float(softcap) if softcap else None


def output_head(model) -> OutputHead | None:
    """The decoder and head of a causal LM (bare or inside a peft wrapper) whose logits the chunked loss computes
    exactly; None when it does not, and the plain path must be used."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(causal, "config", None)
    head = causal.get_output_embeddings() if hasattr(causal, "get_output_embeddings") else None
    decoder = causal.get_decoder() if hasattr(causal, "get_decoder") else None
    if config is None or type(head) is not torch.nn.Linear or head.bias is not None or decoder is None:
        return None  # a quantized or adapted head, or a bias: let the model compute its own logits
    split = OutputHead(decoder, head, *_transform(_text_config(config)))
    if causal not in _checked:
        _checked[causal] = _reproduces_logits(causal, split)
    return split if _checked[causal] else None


def _reproduces_logits(causal, split: OutputHead) -> bool:
    """One forward of a few tokens: do the model's own logits equal the chunked head's? (Checked once per model,
    in eval mode and without gradients; the modules' train/eval states are restored.)"""
    modes = {m: m.training for m in causal.modules()}
    device = split.head.weight.device
    ids = (torch.arange(PROBE_TOKENS, device=device) * 7 + 3)[None] % split.head.weight.shape[0]
    eager = getattr(torch.compiler, "set_stance", None)  # compiled layers: no extra graph for a 4-token check
    try:
        causal.eval()
        with torch.no_grad(), eager("force_eager") if eager else contextlib.nullcontext():
            own = causal(input_ids=ids, use_cache=False).logits.float()
            hidden = split.decoder(input_ids=ids, use_cache=False).last_hidden_state
            ours = split.logits(hidden).float()
    except Exception as e:  # noqa: BLE001 - a model that needs other inputs: the plain path is always correct
        log.debug("chunked head not used (%s: %s)", type(e).__name__, e)
        return False
    finally:
        for module, training in modes.items():
            module.training = training
    same = own.shape == ours.shape and torch.allclose(own, ours, rtol=1e-3, atol=1e-3 * (own.abs().max().item() + 1))
    if not same:
        log.debug("chunked head not used: %s logits are not a plain function of its head", type(causal).__name__)
    return same


def router_kwargs(model) -> dict:
    """What the decoder must be asked for so the router loss can be computed (nothing for dense models)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"output_router_logits": True} if _wants_router_loss(causal) else {}


def _wants_router_loss(causal) -> bool:
    return bool(getattr(getattr(causal, "config", None), "output_router_logits", False))


def router_loss(model, outputs, units: int) -> torch.Tensor | None:
    """`router_aux_loss_coef x load-balancing loss x units` for a mixture-of-experts model whose config sets
    `output_router_logits` (the model's own forward adds coef x aux to its mean loss; the loop divides the summed
    loss by the step's units, so the term is scaled by this micro-batch's units). None for every other model."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not _wants_router_loss(causal):
        return None
    aux = getattr(outputs, "aux_loss", None)
    if aux is None and getattr(outputs, "router_logits", None) is not None:
        balance = getattr(sys.modules.get(type(causal).__module__), "load_balancing_loss_func", None)
        if balance is None:
            raise NotImplementedError(f"{type(causal).__name__}: no load_balancing_loss_func to add its router loss")
        aux = balance(outputs.router_logits, causal.num_experts, causal.num_experts_per_tok, None)
    if aux is None:
        return None
    return causal.router_aux_loss_coef * aux * units
