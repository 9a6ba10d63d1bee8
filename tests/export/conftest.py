"""Tiny trained runs to export: 2 steps of 2 rows on the 2-layer random Llama (well under a second each)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import QA, save_tiny_llama, write_jsonl

PROMPT = "What are the support hours? 고객센터 운영 시간이 어떻게 되나요? Can I bring my dog on the bike, or a cat?"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second intra-op thread gains nothing, and on a shared 2-core machine each op then
    waits for a busy core - 5-10x slower. Restored after each module so other tests keep their settings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_run(tiny_model_dir: Path, folder: Path, *extra: str) -> Path:
    from tunesmith.config import load_config
    from tunesmith.train.loop import train

    data = write_jsonl(folder.parent / f"{folder.name}-faq.jsonl", [{"instruction": q, "output": a} for q, a in QA * 4])
    train(load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={folder}", "max_steps=2",
                             "gradient_accumulation_steps=1", "cutoff_len=64", "learning_rate=1e-2", *extra]),
          show_progress=False)
    return folder


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory) -> Path:
    """The tiny Llama with a 400-token byte-level BPE vocabulary trained on the FAQ text, ChatML template.
    Reading a GGUF costs time per vocabulary entry (gguf-py parses each string), so the numeric GGUF round trips
    use this one: ~0.5 s per load instead of ~8 s with the 49152-token SmolLM2 vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunesmith.data.templates import FORMATS

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([f"{q} {a}" for q, a in QA] * 3, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tok.chat_template = FORMATS["chatml"].jinja()
    return save_tiny_llama(tmp_path_factory.mktemp("small-llama"), tok)


@pytest.fixture(scope="session")
def small_run(small_model_dir, tmp_path_factory) -> Path:
    return train_run(small_model_dir, tmp_path_factory.mktemp("runs") / "small")


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    return train_run(tiny_model_dir, tmp_path_factory.mktemp("runs") / "lora", "val_size=4")


@pytest.fixture(scope="session")
def rm_run(small_model_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    prefs = write_jsonl(root / "prefs.jsonl", [{"prompt": q, "chosen": a, "rejected": "I do not know."}
                                               for q, a in QA * 2])
    return train_run(small_model_dir, root / "rm", "stage=rm", f"dataset={prefs}")


@pytest.fixture(scope="session")
def prompt_ids(tiny_model_dir) -> torch.Tensor:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)(PROMPT, return_tensors="pt").input_ids


@pytest.fixture(scope="session")
def small_ids(small_model_dir) -> torch.Tensor:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(small_model_dir)(PROMPT * 2, return_tensors="pt").input_ids


def peft_reference(run: Path, base: Path | str, reward: bool = False):
    """The run as training left it: the fp32 base with the adapter applied on the fly (not merged)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run)
    if reward:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return PeftModel.from_pretrained(model, run).eval()


class FakeHub:
    """Records what would go to the hub; nothing leaves the machine."""

    def __init__(self, existing_private: bool | None = None):
        self.existing_private = existing_private  # None: the repo does not exist yet
        self.created: list[dict] = []
        self.commits: list[tuple[str, list[str]]] = []

    def create_repo(self, repo_id, *, private, repo_type, exist_ok):
        self.created.append({"repo_id": repo_id, "private": private, "repo_type": repo_type, "exist_ok": exist_ok})

    def repo_info(self, repo_id, *, repo_type):
        class Info:
            private = self.existing_private if self.existing_private is not None else self.created[-1]["private"]
        return Info()

    def create_commit(self, repo_id, operations, *, commit_message, repo_type):
        self.commits.append((repo_id, sorted(op.path_in_repo for op in operations)))
