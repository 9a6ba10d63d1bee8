"""Write a merged causal LM as one GGUF file for llama.cpp, Ollama and LM Studio - no llama.cpp build needed.

Follows llama.cpp's convert_hf_to_gguf.py, one `Arch` per transformers model type (`ARCHS`):
- Llama, SmolLM and Mistral are arch `llama`: llama.cpp applies RoPE to interleaved pairs, so q_proj/k_proj rows
  are permuted from Hugging Face's half-split order (`_permute`, the converter's LlamaModel.permute). llama.cpp's
  `llama` and `phi3` apply no sliding window: a Mistral v0.1 or Phi-3 with one is written with a warning that
  llama.cpp attends to the whole context (the same answers up to the window's length).
- Qwen2 (q/k/v biases) and Qwen3 (q/k norms) keep Hugging Face's order.
- Gemma 2 and 3: norms are stored as 1 + w (Gemma's RMSNorm scales by 1 + w, llama.cpp's by w); soft-capping,
  the sliding window and, for Gemma 3, which layers slide and the local RoPE base go into the metadata.
- Phi-3: fused qkv and gate/up projections, as llama.cpp's phi3 reads them; LongRoPE (Phi-4-mini) as its long and
  short factor tensors and transformers' cos/sin scale. llama.cpp picks the long factors whenever its context exceeds
  the pre-training one, transformers when the sequence does (the converter's behaviour as well).
- A vision-language model (Gemma 3 4B and up): its language model, under its text-only class's names.
- EXAONE 4: norms after attention and MLP, q/k norms, Hugging Face's order. llama.cpp slides windows only in the
  64-layer (32B) shape, with RoPE on the sliding layers only, as transformers does; other windowed shapes are refused.
- GPT-NeoX (Polyglot-ko): each head's q, k, v are interleaved in query_key_value; llama.cpp wants all q rows, then
  all k, then all v. Partial rotary, parallel residual, LayerNorm with biases.
Types: 1-D tensors (norms, biases) stay F32 as in the converter; matrices take the requested type. Q8_0/Q4_0 quantize
blocks of 32 along a row, so a matrix whose rows are not a multiple of 32 falls back to F16 (the converter's rule).
For Q4_0 the embedding and output matrices are Q8_0: 4-bit rounding of the vocabulary projection costs far more
quality per byte than anywhere else (llama-quantize likewise keeps `output` at higher precision).
Tensors are written one at a time after the header, so memory stays at the merged model plus one tensor.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunesmith.export.formats import GGUF_QUANTS
from tunesmith.export.gguf_vocab import add_tokenizer
from tunesmith.export.naming import ExportError
from tunesmith.model.parts import language_model, unused_by_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arch:
    name: str  # llama.cpp's architecture
    permute: bool = False  # q/k rows into llama.cpp's interleaved RoPE order
    norm_shift: float = 0.0  # added to every norm weight (Gemma's 1 + w)
    neox_qkv: bool = False  # per-head interleaved q/k/v -> q, k, v blocks
    layer_norm: bool = False  # LayerNorm (eps key layer_norm_epsilon) instead of RMSNorm


ARCHS = {"llama": Arch("llama", permute=True), "mistral": Arch("llama", permute=True), "qwen2": Arch("qwen2"),
         "qwen3": Arch("qwen3"), "gemma2": Arch("gemma2", norm_shift=1.0),
         "gemma3_text": Arch("gemma3", norm_shift=1.0), "phi3": Arch("phi3"),
         "gpt_neox": Arch("gptneox", neox_qkv=True, layer_norm=True), "exaone4": Arch("exaone4")}
GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}  # llama.cpp scales queries by hidden/heads only for the 27B models
EXAONE4_WINDOWED_LAYERS = 64  # llama.cpp's exaone4 has sliding-window layers only with this many layers (32B)


def _gguf():
    try:
        import gguf
    except ImportError:
        raise ExportError("--format gguf needs the gguf package; pip install gguf") from None
    return gguf


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _neox_qkv(weights: np.ndarray, n_head: int) -> np.ndarray:
    """(heads x [q, k, v] x head_dim, ...) -> ([q of all heads], [k ...], [v ...], ...)."""
    split = weights.reshape(n_head, 3, weights.shape[0] // n_head // 3, *weights.shape[1:])
    return np.concatenate([split[:, i].reshape(-1, *weights.shape[1:]) for i in range(3)], axis=0)


def _rope(config) -> tuple[float, dict]:
    """(rope theta, scaling parameters) from a transformers 5 `rope_parameters` (per layer type for Gemma 3: the
    global layers') or an older `rope_scaling`."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params = dict(params.get("full_attention", params))
    scaling = dict(getattr(config, "rope_scaling", None) or {})
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    merged = {**scaling, **params}
    kind = merged.get("rope_type", merged.get("type", "default"))
    return float(theta), {**merged, "rope_type": kind}


def _text_tensors(model):
    """(name, tensor) for every weight of the text model. A multimodal model's (Gemma 3 4B and up) language model
    goes under the names of its text-only class (model.layers...), as llama.cpp's converter writes it; its vision
    tower is left out (llama.cpp reads that from a separate mmproj file)."""
    towers = unused_by_text(model)
    if towers:
        log.info("GGUF export: the text model only; %s not written (llama.cpp reads a vision tower from a separate "
                 "mmproj file: convert_hf_to_gguf.py --mmproj on an --format hf export)", ", ".join(towers))
    decoder = language_model(model)
    prefix = next((name for name, module in model.named_modules() if module is decoder), "")
    for name, tensor in model.state_dict().items():
        if any(name.startswith(tower + ".") for tower in towers):
            continue
        if towers and prefix and name.startswith(prefix + "."):
            name = "model." + name[len(prefix) + 1:]
        yield name, tensor


def _original_context(config, rope: dict) -> int:
    """The context length a model was pre-trained with, before its RoPE scaling."""
    return (rope.get("original_max_position_embeddings") or getattr(config, "original_max_position_embeddings", None)
            or config.max_position_embeddings)


def _llama3_rope_factors(head_dim: int, theta: float, rope: dict) -> np.ndarray:
    """llama.cpp reads Llama 3.1-style frequency scaling as per-frequency divisors (tensor `rope_freqs`)."""
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    factor, low, high = rope["factor"], rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old / low, old / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def _refuse(config, arch: Arch) -> None:
    """Model variants llama.cpp would run differently from transformers: refused before anything is written."""
    if arch.name in GEMMA_27B_LAYERS:
        head_dim = config.head_dim
        used = (config.hidden_size // config.num_attention_heads
                if config.num_hidden_layers == GEMMA_27B_LAYERS[arch.name] else head_dim)
        if config.query_pre_attn_scalar != used:
            raise ExportError(f"GGUF export: query_pre_attn_scalar={config.query_pre_attn_scalar}, but llama.cpp's "
                              f"{arch.name} scales queries by 1/sqrt({used}); use --format hf")
    if arch.name == "gemma3" and getattr(config, "attn_logit_softcapping", None):
        raise ExportError("GGUF export: llama.cpp's gemma3 has no attention soft-capping; use --format hf")
    window = getattr(config, "sliding_window", None)
    if arch.name == "exaone4" and window is not None and config.num_hidden_layers != EXAONE4_WINDOWED_LAYERS:
        # transformers gives a windowed EXAONE 4 RoPE on its sliding layers only; llama.cpp applies windows (and
        # leaves RoPE out) only in the 64-layer 32B shape, else RoPE and full attention everywhere.
        raise ExportError(f"GGUF export: llama.cpp runs an EXAONE 4 with sliding_window={window} only in its "
                          f"{EXAONE4_WINDOWED_LAYERS}-layer (32B) shape; this one has {config.num_hidden_layers} "
                          "layers - use --format hf")
    if arch.name in ("llama", "phi3") and window and window < config.max_position_embeddings:
        log.warning("GGUF export: llama.cpp runs %s without its %d-token sliding window (it attends to the whole "
                    "context); answers match up to %d tokens", config.model_type, window, window)


class _Plan:
    """Name, target type and a way to produce the data, for each tensor: computed once for the header, once to write."""

    def __init__(self, model, quant: str):
        gguf = _gguf()
        config = model.config.get_text_config()  # a multimodal model's language model is what llama.cpp runs
        if config.model_type not in ARCHS:
            raise ExportError(f"GGUF export supports {', '.join(sorted(ARCHS))} models; this is "
                              f"{config.model_type} - use --format hf and llama.cpp's convert_hf_to_gguf.py")
        if any(a.endswith("ForSequenceClassification") for a in model.config.architectures or []):
            raise ExportError("reward models (stage=rm) have a score head that llama.cpp cannot run; "
                              "export them with --format hf")
        self.arch = ARCHS[config.model_type]
        _refuse(config, self.arch)
        self.config = config
        self.quant = quant
        self.qtype = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
                      "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[quant]
        self.file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant]
        arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == self.arch.name)
        names = gguf.get_tensor_name_map(arch_enum, config.num_hidden_layers)
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.theta, self.rope = _rope(config)
        self.items: list[tuple[str, object, tuple, object]] = []  # (gguf name, type, shape, () -> float32 array)
        tied = getattr(config, "tie_word_embeddings", False)
        for hf_name, tensor in _text_tensors(model):
            if hf_name == "lm_head.weight" and tied:
                continue  # llama.cpp falls back to token_embd when there is no output tensor
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ExportError(f"GGUF export: no llama.cpp name for tensor {hf_name}; this model variant is "
                                  "not supported - use --format hf")
            shape = tuple(tensor.shape)
            self.items.append((name, self._type_for(name, shape), shape, self._loader(hf_name, tensor)))
        if self.rope["rope_type"] == "llama3":
            factors = _llama3_rope_factors(self.head_dim, self.theta, self.rope)
            self.items.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                               gguf.GGMLQuantizationType.F32, factors.shape, lambda: factors))
        elif self.rope["rope_type"] == "longrope" and self.arch.name == "phi3":  # Phi-4-mini
            for kind in ("long", "short"):
                factors = np.asarray(self.rope[f"{kind}_factor"], dtype=np.float32)
                tensor = getattr(gguf.MODEL_TENSOR, f"ROPE_FACTORS_{kind.upper()}")
                self.items.append((gguf.TENSOR_NAMES[tensor] + ".weight", gguf.GGMLQuantizationType.F32,
                                   factors.shape, lambda factors=factors: factors))
        elif self.rope["rope_type"] not in ("default", "linear", "yarn"):
            raise ExportError(f"GGUF export: rope_type {self.rope['rope_type']} is not supported; use --format hf")

    def _type_for(self, name: str, shape) -> object:
        gguf = _gguf()
        if len(shape) <= 1 or name.endswith("_norm.weight"):
            return gguf.GGMLQuantizationType.F32
        qtype = self.qtype
        if self.quant == "q4_0" and name.split(".")[0] in ("token_embd", "output"):
            qtype = gguf.GGMLQuantizationType.Q8_0
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if shape[-1] % block:
            log.info("%s: rows of %d are not a multiple of %d; written as F16", name, shape[-1], block)
            return gguf.GGMLQuantizationType.F16
        return qtype

    def _loader(self, hf_name: str, tensor: torch.Tensor):
        config, arch = self.config, self.arch

        def load() -> np.ndarray:
            data = tensor.detach().to(torch.float32).cpu().numpy()
            if arch.permute and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = _permute(data, config.num_attention_heads, config.num_attention_heads)
            elif arch.permute and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = _permute(data, config.num_attention_heads, config.num_key_value_heads)
            elif arch.neox_qkv and "query_key_value" in hf_name:
                data = _neox_qkv(data, config.num_attention_heads)
            if arch.norm_shift and hf_name.endswith("norm.weight"):
                data = data + arch.norm_shift
            return data
        return load

    def add_hparams(self, writer, name: str, base_name: str) -> None:
        gguf = _gguf()
        c = self.config
        writer.add_type("model")
        writer.add_name(name)
        writer.add_base_model_count(1)
        writer.add_base_model_name(0, base_name)
        writer.add_context_length(c.max_position_embeddings)
        writer.add_embedding_length(c.hidden_size)
        writer.add_block_count(c.num_hidden_layers)
        writer.add_feed_forward_length(c.intermediate_size)
        writer.add_head_count(c.num_attention_heads)
        writer.add_head_count_kv(getattr(c, "num_key_value_heads", None) or c.num_attention_heads)
        if self.arch.layer_norm:
            writer.add_layer_norm_eps(c.layer_norm_eps)
        else:
            writer.add_layer_norm_rms_eps(c.rms_norm_eps)
        writer.add_rope_freq_base(self.theta)
        partial = self.rope.get("partial_rotary_factor", 1.0)  # GPT-NeoX, Phi: RoPE on the first part of a head
        writer.add_rope_dimension_count(int(partial * self.head_dim))
        if self.head_dim != c.hidden_size // c.num_attention_heads or self.arch.name.startswith("gemma"):
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        if self.rope["rope_type"] == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(self.rope["factor"])
        elif self.rope["rope_type"] == "yarn":
            writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            writer.add_rope_scaling_factor(self.rope["factor"])
            writer.add_rope_scaling_orig_ctx_len(self.rope.get("original_max_position_embeddings",
                                                               c.max_position_embeddings))
        self._arch_hparams(writer)
        writer.add_vocab_size(c.vocab_size)
        writer.add_file_type(self.file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def _arch_hparams(self, writer) -> None:
        """What llama.cpp reads for one architecture only (the converter's set_gguf_parameters)."""
        c, arch = self.config, self.arch.name
        window = getattr(c, "sliding_window", None)
        if arch in ("gemma2", "gemma3"):
            if getattr(c, "attn_logit_softcapping", None):
                writer.add_attn_logit_softcapping(c.attn_logit_softcapping)
            if getattr(c, "final_logit_softcapping", None):
                writer.add_final_logit_softcapping(c.final_logit_softcapping)
            if window:
                writer.add_sliding_window(window)
        if arch == "gemma3":
            local = (getattr(c, "rope_parameters", None) or {}).get("sliding_attention", {}).get("rope_theta")
            if local:
                writer.add_rope_freq_base_swa(float(local))
            writer.add_sliding_window_pattern([t == "sliding_attention" for t in c.layer_types])
        if arch == "phi3":
            original = _original_context(c, self.rope)
            writer.add_rope_scaling_orig_ctx_len(original)
            if self.rope["rope_type"] == "longrope":  # cos/sin scaled as transformers scales them
                factor = self.rope.get("factor") or c.max_position_embeddings / original
                writer.add_rope_scaling_attn_factors(self.rope.get("attention_factor") or (
                    math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0))
            writer.add_sliding_window(window or 0)  # 0 marks "no window" for llama.cpp's phi3 (Phi-4)
        if arch == "exaone4" and window is not None:  # the 32B shape (_refuse): its window and which layers slide
            writer.add_sliding_window(window)
            writer.add_sliding_window_pattern([t == "sliding_attention" for t in c.layer_types])
        if arch == "gptneox":
            writer.add_parallel_residual(bool(getattr(c, "use_parallel_residual", True)))


PHI3_NAME_TOKENS = ("<unk>", "<s>", "</s>", "<|endoftext|>")  # llama.cpp looks these up by text in "phi3" models


def _safe_name(name: str, arch: Arch, tokenizer) -> str:
    """llama.cpp sets token attributes by text for models whose general.name contains "phi3" or "phi-3", and fails
    to load one whose vocabulary lacks those tokens (Phi-4-style byte-level BPE): such a name is written as phi_3."""
    vocab = tokenizer.get_vocab()
    risky = arch.name == "phi3" and re.search(r"phi-?3", name, re.IGNORECASE)
    if risky and not all(t in vocab for t in PHI3_NAME_TOKENS):
        safe = re.sub(r"(?i)phi-?3", "phi_3", name)
        log.info("GGUF general.name %r written as %r: llama.cpp would look up %s in this vocabulary", name, safe,
                 ", ".join(PHI3_NAME_TOKENS))
        return safe
    return name


def _nbytes(shape, qtype) -> int:
    gguf = _gguf()
    return int(np.prod(gguf.quant_shape_to_byte_shape(tuple(shape), qtype)))


def write_gguf(model, tokenizer, tokenizer_dir: Path, path: Path, quant: str = "q8_0", name: str | None = None,
               base_name: str = "", progress: bool = True) -> Path:
    """Write `model` (a merged causal LM of a type in ARCHS) with its tokenizer metadata to `path`."""
    if quant not in GGUF_QUANTS:
        raise ExportError(f"--quant {quant}: choose one of {', '.join(GGUF_QUANTS)}")
    gguf = _gguf()
    plan = _Plan(model, quant)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    chatty = logging.getLogger("gguf")  # its INFO lines (endianness, file plan) would bury the progress bar
    level = chatty.level
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        chatty.setLevel(logging.WARNING)
    try:
        _write(gguf, plan, model, tokenizer, tokenizer_dir, tmp, name or path.stem, base_name, progress)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        chatty.setLevel(level)
    tmp.replace(path)  # a crash mid-write never leaves a file that looks complete
    return path


def _write(gguf, plan: _Plan, model, tokenizer, tokenizer_dir: Path, tmp: Path, name: str, base_name: str,
           progress: bool) -> None:
    from tqdm.auto import tqdm

    writer = gguf.GGUFWriter(tmp, plan.arch.name)
    plan.add_hparams(writer, _safe_name(name, plan.arch, tokenizer), base_name)
    add_tokenizer(writer, tokenizer, tokenizer_dir, plan.config.vocab_size)
    total = 0
    for gname, qtype, shape, _ in plan.items:  # the header lists every tensor before any data is written
        nbytes = _nbytes(shape, qtype)
        total += nbytes
        writer.add_tensor_info(gname, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {tmp.name[:-4]}", disable=not progress) as bar:
        for _, qtype, _, load in plan.items:
            data = gguf.quants.quantize(load(), qtype)
            writer.write_tensor_data(data)
            bar.update(data.nbytes)
    writer.close()
