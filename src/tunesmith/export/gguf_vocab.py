"""Tokenizer metadata for GGUF, the way llama.cpp's convert_hf_to_gguf.py writes a vocabulary: byte-level BPE (Llama 3,
Qwen, SmolLM, Mistral Nemo) as llama.cpp's `gpt2` model, sentencepiece-style BPE with byte fallback (Llama 2,
TinyLlama, Mistral 7B v0.x, Gemma, Phi-3-mini, SOLAR/EEVE) as its `llama` (SPM) model.

llama.cpp tokenizes from the file alone, so the file must say everything: the token strings (byte-level spelling)
in id order, each token's type (normal, control = special, user-defined = added but not special, unused = padding
rows), the merges, the special token ids, whether BOS/EOS are added, and `tokenizer.ggml.pre` - the name of the
pre-tokenizer regex llama.cpp should split text with. That name is found like the converter finds it: by hashing the
token ids of a fixed probe text and looking the hash up in a table of known pre-tokenizers.

A sentencepiece-style vocabulary is read from tokenizer.json (no tokenizer.model or sentencepiece package needed):
llama.cpp's SPM tokenizer merges the adjacent pair whose joined piece scores highest, so each piece scores minus the
rank of the first merge that makes it, which gives the merges the order the BPE model applies them in; `<0xNN>`
pieces are byte tokens; whether a space is put before the text comes from encoding "a" (Llama 2: "▁a"; Gemma: "a").
"""

from __future__ import annotations

import json
import logging
import re
from hashlib import sha256
from pathlib import Path

from tunesmith.export.naming import ExportError

log = logging.getLogger(__name__)

# The converter's probe text (llama.cpp convert_hf_to_gguf.py, get_vocab_base_pre): whitespace runs, emoji, digits,
# scripts and contractions - the places where pre-tokenizers differ.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 "
    "3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на "
    "Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make "
    "it, 'D you like some tea? We'Ve a'lL"
)

# sha256(str(token ids of CHKTXT)) -> llama.cpp pre-tokenizer name, for the tokenizers of the llama-family models
# people fine-tune (values from llama.cpp's table).
KNOWN_PRE = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3.x
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2 / Qwen2.5
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM / SmolLM2
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral Nemo
    "0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3": "pixtral",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e": "gpt-4o",
}

# gguf TokenType values (written as plain ints so this module imports without gguf)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _plain_gpt2_split(spec: dict) -> bool:
    """GPT-2's own pre-tokenizer: one ByteLevel step with its built-in regex (the hash also covers the vocabulary,
    so a newly trained vocabulary with GPT-2 splitting is not in the table, but its splitting is known)."""
    pre = spec.get("pre_tokenizer") or {}
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True)


def pre_tokenizer_name(tokenizer, spec: dict | None = None) -> str:
    digest = sha256(str(tokenizer.encode(CHKTXT)).encode()).hexdigest()
    name = KNOWN_PRE.get(digest)
    if name is None and spec is not None and _plain_gpt2_split(spec):
        return "gpt-2"
    if name is None:
        # llama.cpp's converter refuses here; "default" still loads everywhere and only differs from the original
        # split on unusual text (digit runs, rare scripts), so warn instead of blocking the export.
        log.warning("unrecognised pre-tokenizer (hash %s...); writing tokenizer.ggml.pre=default, so llama.cpp may "
                    "split unusual text differently from training", digest[:12])
        return "default"
    return name


def _looks_special(token: str) -> bool:
    """Added tokens some models forget to mark special (llama.cpp's does_token_look_special, abridged)."""
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<pad>", "<mask>")


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens in id order with their types; rows past the tokenizer (padded embeddings) become [PADn] unused."""
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ExportError(f"the tokenizer has ids up to {max(vocab.values())} but the model only {vocab_size} "
                          "embeddings; the run's tokenizer does not match its model")
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            token = added[i]
            tokens.append(token.content)
            types.append(CONTROL if token.special or _looks_special(token.content) else USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(NORMAL)
    return tokens, types


def read_tokenizer_spec(tokenizer_dir: Path) -> tuple[str, dict]:
    """llama.cpp's tokenizer model for this tokenizer.json ("gpt2": byte-level BPE, "llama": sentencepiece-style BPE
    with byte fallback) and the parsed file."""
    path = tokenizer_dir / "tokenizer.json"
    if not path.exists():
        raise ExportError(f"{tokenizer_dir.name}: no tokenizer.json; GGUF export needs a fast (tokenizers) "
                          "tokenizer - use --format hf")
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model", {})
    parts = [spec.get("pre_tokenizer") or {}]
    parts += parts[0].get("pretokenizers", []) if isinstance(parts[0], dict) else []
    byte_level = any(isinstance(p, dict) and p.get("type") == "ByteLevel" for p in parts)
    if model.get("type") == "BPE" and model.get("byte_fallback") and not byte_level:
        return "llama", spec
    if model.get("type") == "BPE" and byte_level and not model.get("byte_fallback"):
        return "gpt2", spec
    raise ExportError(f"GGUF export writes BPE vocabularies (byte-level or sentencepiece-style with byte fallback); "
                      f"this tokenizer is {model.get('type', 'unknown')} - export with --format hf and convert with "
                      "llama.cpp's convert_hf_to_gguf.py")


def merges_of(spec: dict) -> list[str]:
    """Merges as 'a b' strings; spaces inside a part are shifted to U+0120+ as llama.cpp's gguf.SpecialVocab does."""
    merges = spec["model"].get("merges") or []
    if merges and isinstance(merges[0], str):
        return list(merges)
    return [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
            for pair in merges]


def piece_scores(spec: dict, tokens: list[str]) -> list[float]:
    """Sentencepiece scores from the BPE merges: minus the rank of the first merge that makes each piece (0 for
    pieces no merge makes: characters, bytes, special tokens)."""
    rank: dict[str, int] = {}
    for r, pair in enumerate(spec["model"].get("merges") or []):
        left, right = pair.split(" ", 1) if isinstance(pair, str) else pair
        rank.setdefault(left + right, r)
    return [-float(rank[t]) if t in rank else 0.0 for t in tokens]


def adds_special(tokenizer) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS - asked of the tokenizer itself rather than parsed from its config."""
    ids = tokenizer.encode("a")
    bos = tokenizer.bos_token_id is not None and len(ids) > 1 and ids[0] == tokenizer.bos_token_id
    eos = tokenizer.eos_token_id is not None and len(ids) > 1 and ids[-1] == tokenizer.eos_token_id
    return bos, eos


def space_prefix(tokenizer) -> bool:
    """Whether the tokenizer puts a space before the text, as llama.cpp's SPM tokenizer does before the text and after
    every special token. A tokenizer that adds one only where the text has none (transformers' `legacy: false`
    Metaspace) is told apart by " a", and warned about: llama.cpp adds a second one there."""
    def pieces(text: str) -> str:
        return "".join(tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False)))

    prefix = pieces("a").startswith("\u2581")
    if prefix and not pieces(" a").startswith("\u2581\u2581"):
        log.warning("GGUF export: this tokenizer puts a space before the text only where it has none; llama.cpp puts "
                    "one before the text and after every special token, so a prompt with text right after a special "
                    "token (most chat templates) may be read into other tokens than in training")
    return prefix


def add_tokenizer(writer, tokenizer, tokenizer_dir: Path, vocab_size: int) -> None:
    """Write tokenizer.ggml.* and tokenizer.chat_template (the training template) into `writer`."""
    model, spec = read_tokenizer_spec(tokenizer_dir)
    tokens, types = vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model(model)
    if model == "gpt2":
        writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer, spec))
        writer.add_token_merges(merges_of(spec))
    else:
        writer.add_tokenizer_pre("default")
        unk = tokenizer.unk_token_id
        types = [UNKNOWN if i == unk else BYTE if t == NORMAL and BYTE_PIECE.fullmatch(token) else t
                 for i, (token, t) in enumerate(zip(tokens, types))]
        writer.add_token_scores(piece_scores(spec, tokens))
        writer.add_add_space_prefix(space_prefix(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id")
        if token_id is not None and token_id < vocab_size:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    add_bos, add_eos = adds_special(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
