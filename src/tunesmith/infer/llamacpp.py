"""`--engine llamacpp`: decode a .gguf with llama.cpp (the optional `llama-cpp-python`, `pip install
'tunesmith[llamacpp]'`), behind the same engine as the transformers path.

Only the forward pass is llama.cpp's: every request is one llama.cpp sequence in one context, so concurrent requests
share each `llama_decode` (continuous batching) exactly as they share a transformers forward. Prompts are rendered
and tokenized by the GGUF's own tokenizer and template through transformers (as `tunesmith chat FILE.gguf` does),
and sampling, penalties, log-probabilities, stop strings and cancellation are infer/engine.py's, so both engines
answer to the same parameters in the same way. Uses llama.cpp's C API (llama.h) as llama-cpp-python mirrors it.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunesmith.errors import ConfigError, ModelError

# Tokens one request may use (prompt + answer; at most the model's training context). The KV cache holds this many
# for every row at once, so a batch can never run out of cells mid-answer: for SmolLM2-135M, 16 rows x 2048 tokens
# take 750 MB (f16). --max-batch is the knob.
PER_REQUEST_CONTEXT = 2048
PREFILL_CHUNK = 512


def installed() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def need_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError("serve: --engine llamacpp needs llama-cpp-python: pip install 'tunesmith[llamacpp]'") from None
    return llama_cpp


@dataclass
class LlamaCppModel:
    """What the server needs from a served model (the same attributes as infer.loading.LoadedModel)."""

    name: str
    tokenizer: object
    template: object
    engine: object
    context_length: int
    model: object = None  # no torch model: the weights live in llama.cpp
    adapter: str | None = None

    def activate(self) -> None:
        pass

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode_text(self.template.render(self.tokenizer, messages, add_generation_prompt=True))

    def encode_text(self, text: str) -> list[int]:
        from tunesmith.data.dataset import wants_bos

        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if wants_bos(self.tokenizer, self.template) and ids[:1] != [self.tokenizer.bos_token_id]:
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids


class SequenceRows:
    """The backend state of a batch: which llama.cpp sequence each row is, and how many positions it holds."""

    def __init__(self):
        self.sequences: list[int] = []
        self.lengths: list[int] = []


class LlamaCppBackend:
    name = "llamacpp"
    dtype = "gguf"

    def __init__(self, path: Path, rows: int, threads: int | None = None, verbose: bool = False):
        llama_cpp = need_llama_cpp()
        self.lib = llama_cpp
        if not verbose:  # llama.cpp prints its loading log to stderr; one voice unless --verbose
            llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ModelError(f"{path}: llama.cpp could not load this GGUF file")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.limit = min(PER_REQUEST_CONTEXT, llama_cpp.llama_model_n_ctx_train(self.model))
        self.rows = rows
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = self.limit * rows  # one pool of KV cells shared by all sequences, enough for all rows full
        context.n_batch = max(PREFILL_CHUNK, rows)
        context.n_ubatch = context.n_batch
        context.n_seq_max = rows
        context.kv_unified = True
        context.n_threads = context.n_threads_batch = threads or os.cpu_count() or 1
        self.ctx = llama_cpp.llama_init_from_model(self.model, context)
        if not self.ctx:
            raise ModelError(f"{path}: llama.cpp could not create a context ({context.n_ctx} tokens)")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(context.n_batch, 0, 1)
        self.free = list(range(rows))

    def stop_tokens(self) -> set[int]:
        return {t for t in (self.lib.llama_vocab_eos(self.vocab), self.lib.llama_vocab_eot(self.vocab)) if t >= 0}

    def _run(self, tokens: list[int], positions: list[int], sequences: list[int], want: list[bool]) -> None:
        batch = self.batch
        for i, (token, position, sequence, logits) in enumerate(zip(tokens, positions, sequences, want)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = sequence, logits
        batch.n_tokens = len(tokens)
        code = self.lib.llama_decode(self.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def _logits(self, index: int) -> torch.Tensor:
        pointer = self.lib.llama_get_logits_ith(self.ctx, index)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())

    def prefill(self, prompts: list[list[int]]) -> tuple[SequenceRows, torch.Tensor]:
        state, logits = SequenceRows(), []
        try:
            for prompt in prompts:
                if len(prompt) > self.limit:
                    raise ValueError(f"the prompt has {len(prompt)} tokens; this context holds {self.limit}")
                if not self.free:
                    raise RuntimeError("all llama.cpp sequences are busy")
                sequence = self.free.pop()
                state.sequences.append(sequence)
                state.lengths.append(0)
                for start in range(0, len(prompt), PREFILL_CHUNK):
                    chunk = prompt[start:start + PREFILL_CHUNK]
                    last = start + len(chunk) == len(prompt)
                    self._run(chunk, list(range(start, start + len(chunk))), [sequence] * len(chunk),
                              [last and i == len(chunk) - 1 for i in range(len(chunk))])
                state.lengths[-1] = len(prompt)
                logits.append(self._logits(len(chunk) - 1))
        except BaseException:
            self.keep(state, [])  # give the sequences back, their cells cleared
            raise
        return state, torch.stack(logits)

    def decode(self, state: SequenceRows, tokens: list[int]) -> torch.Tensor:
        self._run(tokens, state.lengths, state.sequences, [True] * len(tokens))
        state.lengths = [n + 1 for n in state.lengths]
        return torch.stack([self._logits(i) for i in range(len(tokens))])

    def keep(self, state: SequenceRows, rows: list[int]) -> SequenceRows:
        for i, sequence in enumerate(state.sequences):
            if i not in rows:
                self.lib.llama_memory_seq_rm(self.memory, sequence, -1, -1)
                self.free.append(sequence)
        state.sequences = [state.sequences[i] for i in rows]
        state.lengths = [state.lengths[i] for i in rows]
        return state

    def merge(self, a: SequenceRows, b: SequenceRows) -> SequenceRows:
        a.sequences += b.sequences
        a.lengths += b.lengths
        return a

    def can_merge(self, state: SequenceRows) -> bool:
        return True


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet(level, text, user_data):
    pass


def load(spec: str | None, name: str | None, rows: int, threads: int | None = None) -> LlamaCppModel:
    """A .gguf file (or the embedded model, itself a GGUF) served by llama.cpp."""
    from tunesmith.data.templates import get_template
    from tunesmith.infer.engine import Engine
    from tunesmith.model.loader import EMBEDDED_NAME, embedded_gguf, gguf_tokenizer

    need_llama_cpp()
    path = Path(spec).expanduser() if spec else embedded_gguf()
    if path.suffix != ".gguf" or not path.is_file():
        raise ConfigError(f"serve: --engine llamacpp serves .gguf files; {spec} is not one (export a run with "
                          f"`tunesmith export RUN --format gguf`, or use --engine transformers)")
    try:
        tokenizer = gguf_tokenizer(path)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds for a GGUF it cannot read
        raise ModelError(f"{path}: could not read the tokenizer in this GGUF ({e})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    template = get_template("auto", tokenizer)
    backend = LlamaCppBackend(path, rows, threads)
    stops = backend.stop_tokens() | {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(template.stop)}
    stops.discard(None)
    stops.discard(tokenizer.unk_token_id)
    engine = Engine(None, tokenizer, stops, backend=backend)
    label = name or (EMBEDDED_NAME if spec is None else path.name.split(".")[0])
    return LlamaCppModel(label, tokenizer, template, engine, backend.limit)
