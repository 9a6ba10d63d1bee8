"""GGUF export of sentencepiece-style vocabularies (Llama 2, TinyLlama, Mistral 7B v0.x, Gemma, Phi-3-mini, SOLAR/
EEVE): BPE with byte fallback, `▁` for spaces, written as llama.cpp's SPM (`llama`) tokenizer. The tokenizers here
(tests/families/spm.py, trained on the FAQ text) have Llama 2's leading space or not, as Gemma's; llama.cpp must read
every text into our ids from the file alone."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import QA
from tests.families.spm import spm_tokenizer
from tests.export.test_gguf import compare_llama_cpp
from tunesmith.export import ExportError
from tunesmith.export.gguf_writer import write_gguf
from tunesmith.model.loader import gguf_tokenizer

TEXTS = ["Support is open from 8 AM to 9 PM.", "고객센터 🚀 전화번호는?", "  two  spaces\nnew line\n\n", "x",
         " leading", "tab\there", "Ünïcödé ÷ 😶\u200d🌫️", "<s> inside text </s>"]


def save_spm_tokenizer(folder, space_prefix: bool):
    tokenizer = spm_tokenizer([text for pair in QA for text in pair], space_prefix)
    tokenizer.save_pretrained(folder)
    return tokenizer


@pytest.mark.parametrize("space_prefix", [True, False], ids=["llama2-style", "gemma-style"])
def test_llama_cpp_reads_every_text_into_our_ids_and_runs_the_model(space_prefix, tmp_path):
    import llama_cpp
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = save_spm_tokenizer(tmp_path / "tok", space_prefix)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1,
                         eos_token_id=2, initializer_range=0.2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    path = write_gguf(model, tokenizer, tmp_path / "tok", tmp_path / "spm.F16.gguf", "f16", progress=False)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    for text in TEXTS:  # byte fallback (emoji, rare letters), runs of spaces, newlines, special tokens in the text
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == tokenizer.encode(text), text
    llm.close()
    ids = torch.tensor([tokenizer.encode(" ".join(TEXTS[:2]))])
    rms, worst, agree = compare_llama_cpp(model, path, ids)
    assert rms < 5e-3 and agree >= 0.95, (rms, worst, agree)
    if not space_prefix:  # transformers reads a GGUF's sentencepiece vocabulary by architecture: Gemma's without
        return  # a leading space, a Llama's with one
    # chat and serve read the file's tokenizer through transformers: the same ids (its own reading of a Llama 2
    # vocabulary put no space after a special token, where training and llama.cpp do)
    read_back = gguf_tokenizer(path)
    for text in TEXTS:
        assert read_back(text, add_special_tokens=False)["input_ids"] == tokenizer(text, add_special_tokens=False)[
            "input_ids"], text


def test_unigram_vocabularies_are_refused(tmp_path):
    from tunesmith.export.gguf_vocab import read_tokenizer_spec

    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": []}}))
    with pytest.raises(ExportError, match="this tokenizer is Unigram - export with --format hf"):
        read_tokenizer_spec(tmp_path)


def test_a_space_only_where_the_text_has_none_is_warned_about(tmp_path, caplog):
    """transformers' `legacy: false` sentencepiece tokenizers (Metaspace, prepend_scheme=first) put no space after a
    special token; llama.cpp does, whatever the file says."""
    from transformers import AutoTokenizer

    from tunesmith.export.gguf_vocab import space_prefix

    save_spm_tokenizer(tmp_path, space_prefix=True)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    spec["normalizer"] = None
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    assert space_prefix(AutoTokenizer.from_pretrained(tmp_path))
    assert "llama.cpp puts one before the text and after every special token" in caplog.text
    caplog.clear()
    assert space_prefix(save_spm_tokenizer(tmp_path / "legacy", space_prefix=True)) and not caplog.text
    assert not space_prefix(save_spm_tokenizer(tmp_path / "gemma", space_prefix=False)) and not caplog.text
