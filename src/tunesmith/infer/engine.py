"""Batched text generation with the transformers model's own weights (no extra engine needed).

The engine decodes a running `Batch`: one forward pass per new token serves every request in it, and each request
keeps its own sampling settings, penalties, stop strings, seed and token budget. Finished requests leave the batch
after any step and new ones can join it (`join`), which is what the server's continuous batching is made of
(serve/batcher.py); `generate` runs one group to the end (chat). A decoding step on a CPU is mostly reading the
weights, so eight requests in one step cost far less than eight steps.

The forward pass is a backend's: infer/llama_backend.py (a preallocated cache, optionally bf16 weights) for
Llama-shaped models on a CPU, infer/hf_backend.py (transformers' own forward) for everything else.

One request's fault is that request's alone: a seed that does not fit, a sampler that raises, a client callback that
fails, a cancellation from its client - it leaves the batch with `finish_reason` "error" or "cancelled" and the
others decode on. Only a failing forward pass (shared by all rows) ends every request of the batch.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tunesmith.infer import llama_backend
from tunesmith.infer.hf_backend import HfBackend
from tunesmith.infer.sampling import History, TokenLogprob, sample, token_logprob

__all__ = ["Batch", "Engine", "Request", "SamplingParams", "sample"]
log = logging.getLogger(__name__)


@dataclass
class SamplingParams:
    """How a request decodes. SAMPLING_RANGES bounds the numbers (chat's flags and the server's fields are checked
    against it)."""

    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: int | None = None  # None: none; k: the chosen token's log-probability and the k best alternatives


SAMPLING_RANGES = {"max_new_tokens": (1, 1 << 20), "temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
                   "top_k": (-1, 1 << 20), "repetition_penalty": (0.01, 10.0), "frequency_penalty": (-2.0, 2.0),
                   "presence_penalty": (-2.0, 2.0)}  # top_k: 0 or -1 (vLLM's spelling) = off


@dataclass
class Request:
    prompt_ids: list[int]
    params: SamplingParams
    on_text: Callable[[str], None] | None = None  # receives text as it is decided (streaming)
    completion_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop" (EOS or stop string), "length", "cancelled" or "error"
    logprobs: list[TokenLogprob] = field(default_factory=list)
    error: BaseException | None = None
    cancelled: bool = False  # set from any thread; the request leaves the batch before the next step
    _sent: int = 0  # characters already handed to on_text

    def fail(self, error: BaseException) -> None:
        self.error, self.finish_reason = error, "error"


@dataclass
class Batch:
    """Requests being decoded together: the backend's cache state and the logits for their next token."""

    requests: list[Request]
    state: object  # HfState or SlotCache, the backend's
    logits: torch.Tensor  # (B, V) float on CPU
    histories: list[History]
    generators: list[torch.Generator]

    @property
    def cache(self):
        return getattr(self.state, "cache", self.state)


class Engine:
    def __init__(self, model, tokenizer, stop_token_ids: set[int], dtype: str = "auto", backend=None,
                 quantized_from: str | None = None):
        """`model`: a transformers model; or None with a ready `backend` (llama.cpp: infer/llamacpp.py).
        `quantized_from`: the GGUF quantization the model's weights were read from, if any (auto may pick int8)."""
        self.model = model
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self.device = next(model.parameters()).device if model is not None else torch.device("cpu")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._backend = backend
        self.dtype = dtype  # "auto", "fp32", "bf16" or "int8"; the fast path is built on first use
        self.quantized_from = quantized_from

    def use(self, dtype: str = "auto", fast: bool = True) -> Engine:
        """Choose the decoding path: dtype "auto" (on a CPU with fast bf16, for large fp32 weights: int8 when they
        came from an 8-bit or smaller GGUF, else bf16), "fp32", "bf16" or "int8"; fast=False forces transformers'
        own forward. (An engine built on a given backend keeps it.)"""
        if self.model is not None:
            self.dtype, self._backend = dtype, (None if fast else HfBackend(self.model, self.pad_id))
        return self

    @property
    def backend(self):
        if self._backend is None:
            if llama_backend.supports(self.model):
                dtype = self.dtype
                if dtype == "auto":
                    dtype = llama_backend.auto_dtype(self.model, self.quantized_from)
                self._backend = llama_backend.LlamaBackend(self.model, dtype)
            else:
                self._backend = HfBackend(self.model, self.pad_id)
        return self._backend

    def describe(self) -> str:
        """e.g. "fast (bf16)": the decoding path and the dtype of its weights."""
        backend = self.backend
        dtype = getattr(backend, "dtype", None) or str(getattr(self.model, "dtype", "")).replace("torch.", "")
        return f"{backend.name} ({dtype})"

    def generate(self, requests: list[Request]) -> None:
        """Decode these requests together to the end; a request that failed re-raises its error here."""
        batch = self.prefill(requests)
        while batch.requests:
            self.step(batch)
        for r in requests:
            if r.error is not None:
                raise r.error

    def prefill(self, requests: list[Request]) -> Batch:
        return self.join(None, requests)

    def join(self, batch: Batch | None, requests: list[Request]) -> Batch:
        """Add requests to a running batch (continuous batching). Requests that cannot start (a bad seed, a prompt
        the model refuses) finish at once with an error; the others join."""
        ready, generators = [], []
        for r in requests:
            try:
                seed = r.params.seed if r.params.seed is not None else random.getrandbits(63)
                generators.append(torch.Generator().manual_seed(seed))
                ready.append(r)
            except Exception as e:  # noqa: BLE001 - one request's problem
                r.fail(e)
        state, logits, ready, generators = self._prefill(ready, generators)
        if state is None:
            return batch if batch is not None else Batch([], None, torch.empty(0), [], [])
        incoming = Batch(ready, state, logits, [History(set(r.prompt_ids)) for r in ready], generators)
        if batch is None or not batch.requests:
            return incoming
        return Batch(batch.requests + incoming.requests, self.backend.merge(batch.state, incoming.state),
                     torch.cat([batch.logits, incoming.logits]), batch.histories + incoming.histories,
                     batch.generators + incoming.generators)

    def _prefill(self, requests: list[Request], generators: list[torch.Generator]):
        """Prefill together; if that fails, one by one, so only the request that breaks it fails."""
        if not requests:
            return None, None, [], []
        try:
            state, logits = self.backend.prefill([r.prompt_ids for r in requests])
            return state, logits, requests, generators
        except Exception as e:  # noqa: BLE001
            if len(requests) == 1:
                log.warning("prefill failed: %s", e)
                requests[0].fail(e)
                return None, None, [], []
        state, logits, kept, kept_generators = None, [], [], []
        for r, g in zip(requests, generators):
            one, row_logits, _, _ = self._prefill([r], [g])
            if one is None:
                continue
            state = one if state is None else self.backend.merge(state, one)
            logits.append(row_logits)
            kept.append(r)
            kept_generators.append(g)
        return state, (torch.cat(logits) if logits else None), kept, kept_generators

    def can_join(self, batch: Batch | None) -> bool:
        return batch is None or not batch.requests or self.backend.can_merge(batch.state)

    @torch.no_grad()
    def step(self, batch: Batch) -> list[Request]:
        """Pick one token for every request; drop the finished ones (done, failed or cancelled); return them."""
        tokens = []
        for i, r in enumerate(batch.requests):
            if r.cancelled:
                r.finish_reason = "cancelled"
                tokens.append(None)
                continue
            try:
                row = batch.logits[i]
                if r.params.logprobs is not None:
                    raw = row.clone()
                history = batch.histories[i]
                token = sample(row, r.params, history.seen, batch.generators[i], history.counts)
                history.add(token)
                if r.params.logprobs is not None and token not in self.stop_token_ids:  # one per completion token
                    r.logprobs.append(token_logprob(raw, token, r.params.logprobs))
                self._advance(r, token)
            except Exception as e:  # noqa: BLE001 - this request fails alone
                log.warning("request failed while decoding: %s", e)
                r.fail(e)
                token = None
            tokens.append(token)
        keep = [i for i, r in enumerate(batch.requests) if r.finish_reason is None]
        finished = [r for r in batch.requests if r.finish_reason is not None]
        for r in finished:
            if r.finish_reason in ("stop", "length"):
                try:
                    self._send(r, final=True)
                except Exception as e:  # noqa: BLE001 - its client's callback failed: its own problem
                    r.fail(e)
        if len(keep) < len(batch.requests):
            batch.state = self.backend.keep(batch.state, keep)  # even to none: llama.cpp sequences are given back
            batch.requests = [batch.requests[i] for i in keep]
            batch.histories = [batch.histories[i] for i in keep]
            batch.generators = [batch.generators[i] for i in keep]
        if not keep:
            return finished
        try:
            batch.logits = self.backend.decode(batch.state, [tokens[i] for i in keep])
        except Exception as e:
            log.exception("decoding step failed")
            for r in batch.requests:
                r.fail(e)
            with contextlib.suppress(Exception):  # the state may be broken too; the batch is dropped anyway
                batch.state = self.backend.keep(batch.state, [])
            finished += batch.requests
            batch.requests, batch.histories, batch.generators = [], [], []
        return finished

    def _advance(self, r: Request, token: int) -> None:
        if token in self.stop_token_ids:
            r.finish_reason = "stop"
            return
        r.completion_ids.append(token)
        r.text = self.tokenizer.decode(r.completion_ids, skip_special_tokens=True)
        for stop in r.params.stop:
            at = r.text.find(stop)
            if stop and at >= 0:
                r.text, r.finish_reason = r.text[:at], "stop"
        full = len(r.prompt_ids) + len(r.completion_ids) >= (getattr(self.backend, "limit", None) or 1 << 62)
        if r.finish_reason is None and (len(r.completion_ids) >= r.params.max_new_tokens or full):
            r.finish_reason = "length"
        if r.finish_reason is None:
            self._send(r, final=False)

    def _send(self, r: Request, final: bool) -> None:
        """Send the text that can no longer change: not a half-decoded character, not a possible stop prefix."""
        ready = len(r.text)
        if not final:
            if r.text.endswith("\ufffd"):  # a multi-byte character (e.g. Korean) split across tokens
                ready = len(r.text.rstrip("\ufffd"))
            for stop in r.params.stop:
                for k in range(min(len(stop) - 1, ready), 0, -1):
                    if r.text[:ready].endswith(stop[:k]):
                        ready -= k
                        break
        if r.on_text is not None and ready > r._sent:
            r.on_text(r.text[r._sent:ready])
            r._sent = ready
