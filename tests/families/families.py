"""The model families of the matrix: for each, a tokenizer carrying the family's real special tokens and chat template
(the embedded SmolLM2 byte-level BPE vocabulary, or for TinyLlama a sentencepiece-style one from
tests/families/spm.py, plus the family's added tokens; nothing is downloaded) and a tiny random model built from the
family's own config class - 2 layers, width 64, heads of 16 - with the features that make the family differ: sliding
windows shorter than the test rows, attention and final-logit soft-capping, q/k norms, qkv biases, fused qkv/gate-up
projections, partial rotary, tied or untied embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.families import chat_templates

WINDOW = 6  # sliding window of Gemma 2/3: shorter than most test rows (llama.cpp applies Gemma's windows too)
# llama.cpp runs Mistral (arch llama) and Phi-3 without their sliding window: theirs is longer than the chats of the
# llama.cpp check, and still shorter than the rows of the training check (tests/families/test_packed_exact.py).
LONG_WINDOW = 64
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 512}


@dataclass(frozen=True)
class Family:
    name: str  # the matrix row
    slug: str  # short name: test ids, folders
    model_type: str
    config: dict  # keyword arguments of the family's config class, on top of SMALL
    chat_template: str | None  # None: keep the embedded tokenizer's, or (no_template) none at all
    special: dict = field(default_factory=dict)  # bos/eos/pad/unk -> token (None removes it)
    added: tuple[str, ...] = ()  # the family's other special tokens
    plain: tuple[str, ...] = ()  # added tokens that are not special (decoded into answers: Qwen3's <think>)
    end_of_turn: str = ""  # the token chat and serve must stop on
    template: str = "auto"  # what training uses
    no_template: bool = False  # a base model without a chat template
    gguf_arch: str | None = None  # llama.cpp's architecture name; None: not exportable to GGUF
    initializer_range: float = 0.2  # large enough random weights that LoRA memorises the answers in a few steps
    needs: str = ""  # what the family needed (the README table's last column)
    sentencepiece: bool = False  # a sentencepiece-style vocabulary (tests/families/spm.py) instead of SmolLM2's


LLAMA3_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "<|eom_id|>", "<|python_tag|>")
GEMMA_TOKENS = ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>")
IMAGE_TOKENS = ("<start_of_image>", "<end_of_image>", "<image_soft_token>")  # Gemma 3's, in its vocabulary
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "image_size": 28, "patch_size": 14}
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
GEMMA_SIZES = {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": WINDOW,
               "layer_types": ["sliding_attention", "full_attention"]}

FAMILIES = [
    # Llama 3.1-3.3: the real template always writes a system block with a date preamble. A *base* tokenizer (EOS
    # <|end_of_text|>) with that template: answers must end with <|eot_id|>, which is not its EOS.
    Family("Llama 3.x", "llama3", "llama", {"rope_parameters": LLAMA3_ROPE, "tie_word_embeddings": False},
           chat_templates.LLAMA3, {"bos": "<|begin_of_text|>", "eos": "<|end_of_text|>", "pad": None, "unk": None},
           LLAMA3_TOKENS, end_of_turn="<|eot_id|>", gguf_arch="llama",
           needs="its 3.1+ template (a date preamble before every system prompt) recognised as llama3, so a base "
                 "model learns `<|eot_id|>`, not its EOS; Llama 3.1 RoPE scaling written as rope_freqs"),
    # Qwen2.5 base: EOS <|endoftext|>, ChatML template with a default system prompt; q/k/v biases.
    Family("Qwen2.5", "qwen25", "qwen2", {"tie_word_embeddings": True}, chat_templates.QWEN25,
           {"bos": None, "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": None},
           end_of_turn="<|im_end|>", gguf_arch="qwen2",
           needs="ChatML with a default system prompt; a base model learns `<|im_end|>`, not its EOS; q/k/v biases"),
    # Qwen3: q/k RMS norms, thinking template (an empty <think></think> block before the final answer).
    Family("Qwen3", "qwen3", "qwen3", {"head_dim": 16, "tie_word_embeddings": True}, chat_templates.QWEN3,
           {"bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "unk": None}, plain=("<think>", "</think>"),
           end_of_turn="<|im_end|>", gguf_arch="qwen3",
           needs="its thinking template: the empty think block is trained with the last answer (qwen3) or part of "
                 "the prompt (qwen3_nothink), and dropped from earlier turns; q/k norms"),
    # Mistral: [INST] template, EOS ends answers, a sliding window shorter than the rows.
    Family("Mistral", "mistral", "mistral", {"sliding_window": LONG_WINDOW, "tie_word_embeddings": False},
           chat_templates.MISTRAL, {"bos": "<s>", "eos": "</s>", "pad": None, "unk": "<unk>"}, ("[INST]", "[/INST]"),
           end_of_turn="</s>", gguf_arch="llama",
           needs="[INST] template with the system prompt in the last user turn; the sliding window in training "
                 "(llama.cpp applies none for Mistral)"),
    # Gemma 2: attention and final-logit soft-capping, alternating local/global layers, (1 + w) norms, tied head.
    Family("Gemma 2", "gemma2", "gemma2", {**GEMMA_SIZES, "attn_logit_softcapping": 50.0,
                                           "final_logit_softcapping": 30.0, "tie_word_embeddings": True},
           chat_templates.GEMMA2, {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": None}, GEMMA_TOKENS,
           end_of_turn="<end_of_turn>", gguf_arch="gemma2",
           needs="soft-capped attention and local/global windows in row attention; a soft-capped chunked head; "
                 "norms exported as 1 + w; its template refuses system prompts (template=gemma takes them)"),
    # Gemma 3: q/k norms, local/global layers with their own RoPE bases, system prompt inside the first user turn.
    Family("Gemma 3", "gemma3", "gemma3_text", {**GEMMA_SIZES, "tie_word_embeddings": True}, chat_templates.GEMMA3,
           {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": None}, GEMMA_TOKENS,
           end_of_turn="<end_of_turn>", gguf_arch="gemma3",
           needs="local/global layers with their own RoPE bases, their pattern written into the GGUF; q/k norms; "
                 "the system prompt inside the first user turn"),
    # Gemma 3 4B and up: the same language model inside a vision-language model (Gemma3ForConditionalGeneration),
    # which is what AutoModelForCausalLM loads; text rows never reach its vision tower.
    Family("Gemma 3 (4B+, with vision)", "gemma3vl", "gemma3", {**GEMMA_SIZES, "tie_word_embeddings": True},
           chat_templates.GEMMA3, {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": None},
           (*GEMMA_TOKENS, *IMAGE_TOKENS), end_of_turn="<end_of_turn>", gguf_arch="gemma3",
           needs="adapters and full training on the language model only (its first `layers` list is the vision "
                 "encoder's: freeze and FSDP find the language model's); GGUF of the language model under its "
                 "text-only names, the vision tower left to llama.cpp's separate mmproj file"),
    # Phi-3: fused qkv and gate/up projections, a sliding window, <|end|> ends turns (EOS is <|endoftext|>).
    Family("Phi-3", "phi3", "phi3", {"sliding_window": LONG_WINDOW, "tie_word_embeddings": False}, chat_templates.PHI3,
           {"bos": "<s>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": "<unk>"},
           ("</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), end_of_turn="<|end|>", gguf_arch="phi3",
           needs="fused qkv and gate/up projections; `<|end|>` ends turns, EOS the conversation; the sliding window in "
                 "training (llama.cpp applies none for Phi-3)"),
    # Polyglot-ko (KoAlpaca's base): GPT-NeoX with partial rotary, parallel residual, LayerNorm with biases; no chat
    # template, trained with the KoAlpaca prompt.
    Family("GPT-NeoX (Polyglot-ko / KoAlpaca)", "gptneox", "gpt_neox",
           {"num_key_value_heads": None, "rotary_pct": 0.5, "use_parallel_residual": True,
            "tie_word_embeddings": False}, None,
           {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": "<|endoftext|>"},
           ("<|sep|>",), end_of_turn="<|endoftext|>", template="koalpaca", no_template=True, gguf_arch="gptneox",
           needs="no chat template: template=koalpaca; its EOS is also its UNK and must stay a stop token; per-head "
                 "q/k/v reordered for llama.cpp; partial rotary"),
    # EXAONE 4.0 (LG AI Research; 1.2B shape: every layer global): post-norms after attention and MLP instead of
    # pre-norms, q/k norms, Llama 3.1 RoPE scaling; its template opens every answer with an empty think block.
    Family("EXAONE 4.0", "exaone4", "exaone4", {"head_dim": 16, "rope_parameters": LLAMA3_ROPE, "sliding_window": None,
                                                "layer_types": ["full_attention"] * 2,
                                                "tie_word_embeddings": True}, chat_templates.EXAONE4,
           {"bos": "[BOS]", "eos": "[|endofturn|]", "pad": "[PAD]", "unk": "[UNK]"},
           ("[|system|]", "[|user|]", "[|assistant|]", "[|tool|]"), plain=("<think>", "</think>"),
           end_of_turn="[|endofturn|]", gguf_arch="exaone4",
           needs="its template recognised as exaone4 (the empty think block is prompt, before every answer); norms "
                 "after attention and MLP, q/k norms, Llama 3.1 RoPE scaling written as rope_freqs"),
    # TinyLlama-1.1B-Chat (Llama 2's sentencepiece vocabulary): the Zephyr template, <|user|> etc. as plain text.
    Family("TinyLlama (Llama 2 vocabulary)", "tinyllama", "llama", {"tie_word_embeddings": False},
           chat_templates.TINYLLAMA, {"bos": "<s>", "eos": "</s>", "pad": None, "unk": "<unk>"},
           end_of_turn="</s>", gguf_arch="llama", sentencepiece=True,
           needs="its Zephyr template recognised as zephyr; a sentencepiece vocabulary (byte fallback, a space before "
                 "the text and after every special token) written as llama.cpp's SPM tokenizer"),
    # SmolLM2: the embedded tokenizer as it is (ChatML with a default system prompt), a Llama model.
    Family("SmolLM2", "smollm2", "llama", {"tie_word_embeddings": True}, None, {}, (), end_of_turn="<|im_end|>",
           gguf_arch="llama", needs="the embedded model's own template (ChatML, default system prompt); PAD is the "
                                    "end-of-turn token"),
]
BY_SLUG = {f.slug: f for f in FAMILIES}


def family_tokenizer(embedded_dir: Path, family: Family):
    """The embedded tokenizer turned into the family's: its special tokens added and named, its chat template."""
    from transformers import AutoTokenizer

    if family.sentencepiece:
        from tests.conftest import QA
        from tests.families.spm import spm_tokenizer

        tok = spm_tokenizer([text for pair in QA for text in pair])
    else:
        tok = AutoTokenizer.from_pretrained(embedded_dir)
    names = {kind: token for kind, token in family.special.items() if token is not None}
    extra = [t for t in family.added if t not in names.values()]
    tok.add_special_tokens({f"{kind}_token": token for kind, token in names.items()}
                           | ({"additional_special_tokens": extra} if extra else {}))
    tok.add_tokens(list(family.plain), special_tokens=False)
    for kind, token in family.special.items():
        if token is None:
            setattr(tok, f"{kind}_token", None)
    if family.no_template:
        tok.chat_template = None
    elif family.chat_template is not None:
        tok.chat_template = family.chat_template
    return tok


def family_config(family: Family, tok):
    from transformers import AutoConfig

    sizes = {**SMALL, **family.config}
    if family.model_type == "gpt_neox":
        sizes.pop("num_key_value_heads")
        sizes["intermediate_size"] = 4 * sizes["hidden_size"]
    ids = {f"{kind}_token_id": getattr(tok, f"{kind}_token_id") for kind in ("bos", "eos", "pad")}
    if family.model_type == "gemma3":  # the language model's config inside the vision-language one
        text = AutoConfig.for_model("gemma3_text", vocab_size=len(tok), initializer_range=family.initializer_range,
                                    **ids, **sizes)
        image = dict(zip(("boi_token_index", "eoi_token_index", "image_token_index"),
                         tok.convert_tokens_to_ids(list(IMAGE_TOKENS))))
        return AutoConfig.for_model("gemma3", text_config=text.to_dict(), vision_config=TINY_VISION,
                                    mm_tokens_per_image=4, initializer_range=family.initializer_range, **image)
    return AutoConfig.for_model(family.model_type, vocab_size=len(tok), initializer_range=family.initializer_range,
                                **ids, **sizes)


def save_family_model(out: Path, family: Family, embedded_dir: Path, seed: int = 0) -> Path:
    """A tiny random model of the family with its tokenizer, saved like any hub model folder."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = family_tokenizer(embedded_dir, family)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family, tok), dtype=torch.float32)
    with torch.no_grad():  # zero-initialised biases and norm offsets would hide a misplaced tensor in export
        for name, p in model.named_parameters():
            if name.endswith("bias") or (family.model_type.startswith("gemma") and "norm" in name):
                p.normal_(0, 0.1)
        # The PAD row starts at zero (padding_idx); a trained model's is not, and a tied head with a zero row for a
        # PAD that is also the end-of-turn token (SmolLM2) could never predict it.
        embeddings = model.get_input_embeddings().weight
        empty = embeddings.abs().sum(-1) == 0
        embeddings[empty] = torch.randn_like(embeddings[empty]) * family.initializer_range
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
