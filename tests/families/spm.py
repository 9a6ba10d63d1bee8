"""A sentencepiece-style tokenizer built the way transformers converts a sentencepiece BPE model (Llama 2, TinyLlama,
Mistral 7B v0.x, Gemma): tokenizers' BPE with byte fallback trained on a small corpus, laid out as Llama 2's is -
<unk> <s> </s>, the 256 byte pieces, then the learned pieces - with `▁` for spaces, and Llama 2's leading space or
none (Gemma's). Nothing is downloaded."""

from __future__ import annotations

import json


def spm_tokenizer(texts: list[str], space_prefix: bool = True):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = texts * 10
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first" if space_prefix else "never")
    learner.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)])}
    for piece, _ in sorted(learner.get_vocab().items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) for m in json.loads(learner.to_str())["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    steps = [normalizers.Prepend("\u2581")] if space_prefix else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     *([decoders.Strip(" ", 1, 0)] if space_prefix else [])])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


