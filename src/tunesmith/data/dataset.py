"""From config to encoded train/validation examples.

Two phases on purpose: `load_items` reads and checks every row before any model is loaded (a bad row costs the
user one second, not a model load), and `encode_items` tokenizes with the model's tokenizer and template.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from tunesmith.config import TrainConfig
from tunesmith.data.formats import Conversation, Document, Preference, to_canonical
from tunesmith.data.packing import IGNORE, Example
from tunesmith.data.sources import read_rows
from tunesmith.data.templates import Template
from tunesmith.errors import DataError

log = logging.getLogger(__name__)
Item = Conversation | Document


@dataclass
class Splits:
    train: list[Item]
    val: list[Item]


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _load(sources: list[str], cfg: TrainConfig) -> list[Item]:
    items: list[Item] = []
    for source in sources:
        items += to_canonical(read_rows(source), cfg.dataset_format, cfg.columns, cfg.system)
    for item in items:  # here, before any model or tokenizer loads, rather than when the stage encodes
        problem = stage_mismatch(item, cfg.stage)
        if problem:
            raise DataError(f"{item.location}: {problem}")
    return items


def stage_mismatch(item: Item | Preference, stage: str) -> str | None:
    """Why `stage` cannot train on this kind of row, with the fix; None when it can."""
    if stage == "pt":
        if isinstance(item, Document):
            return None
        kind = "preference rows go to stage=dpo or stage=rm" if isinstance(item, Preference) \
            else "use stage=sft for conversations"
        return f"stage=pt trains on raw text; give rows with a 'text' column or .txt files ({kind})"
    if stage in ("rm", "dpo"):
        if isinstance(item, Preference):
            return None
        kind = "raw text (stage=pt)" if isinstance(item, Document) else "a conversation (stage=sft)"
        return (f"stage={stage} needs preference rows (prompt, chosen, rejected), this row is {kind}; add "
                "'chosen' and 'rejected' answers or change the stage")
    if isinstance(item, Document):
        return (f"raw text rows need stage=pt; for stage={stage} use instruction/output, conversations or messages "
                "rows")
    if isinstance(item, Preference):
        return (f"this is a preference row (chosen/rejected), which stage={stage} cannot learn from; use stage=dpo "
                "or stage=rm, or for stage=sft give an output/answer column (e.g. columns={output: chosen})")
    return None


def load_items(cfg: TrainConfig) -> Splits:
    train = _load(_as_list(cfg.dataset), cfg)
    random.Random(cfg.seed).shuffle(train)
    if cfg.val_dataset:
        val = _load(_as_list(cfg.val_dataset), cfg)
    else:
        n_val = int(cfg.val_size) if cfg.val_size >= 1 else round(len(train) * cfg.val_size)
        if n_val >= len(train):
            raise DataError(f"{_as_list(cfg.dataset)[0]}: val_size={cfg.val_size} leaves no training rows "
                            f"out of {len(train)}; lower val_size")
        val, train = train[:n_val], train[n_val:]
    if cfg.max_samples:
        train = train[: cfg.max_samples]
    return Splits(train, val)


def encode_conversation(conv: Conversation, template: Template, tokenizer, cutoff_len: int,
                        train_on_prompt: bool = False) -> Example | None:
    ids: list[int] = []
    labels: list[int] = []
    if wants_bos(tokenizer, template):
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE)
    for text, is_answer in template.segments(tokenizer, conv.messages, conv.system):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if (is_answer or train_on_prompt) else [IGNORE] * len(piece)
    ids, labels = ids[:cutoff_len], labels[:cutoff_len]
    if all(label == IGNORE for label in labels[1:]):
        return None  # the answer was cut off entirely: nothing to learn from this row
    return Example(ids, labels)


def wants_bos(tokenizer, template: Template | None) -> bool:
    """Prepend BOS when the tokenizer normally adds one and the template does not write it itself."""
    bos = tokenizer.bos_token_id
    if bos is None or (template is not None and "bos_token" in template.chat_template):
        return False
    return tokenizer("a")["input_ids"][:1] == [bos]


def encode_items(items: list[Item], template: Template, tokenizer, cfg: TrainConfig, split: str) -> list[Example]:
    examples, dropped, truncated = [], 0, 0
    for item in items:
        problem = stage_mismatch(item, "sft")  # a preference row encodes to no answer: never "raise cutoff_len"
        if problem:
            raise DataError(f"{item.location}: {problem}")
        ex = encode_conversation(item, template, tokenizer, cfg.cutoff_len, cfg.train_on_prompt)
        if ex is None:
            dropped += 1
            continue
        truncated += len(ex) == cfg.cutoff_len
        examples.append(ex)
    if dropped:
        log.warning("%s: %d rows dropped: their answer starts after cutoff_len=%d tokens", split, dropped,
                    cfg.cutoff_len)
    if truncated:
        log.warning("%s: %d rows truncated to cutoff_len=%d tokens", split, truncated, cfg.cutoff_len)
    if items and not examples:
        raise DataError(f"{split}: no row fits cutoff_len={cfg.cutoff_len}; raise cutoff_len")
    return examples


def encode_documents(items: list[Item], tokenizer, cutoff_len: int, split: str) -> list[Example]:
    """Raw text for pretraining: document + EOS, cut into rows of at most cutoff_len tokens (each its own row in a
    packed micro-batch, so attention never crosses a document boundary)."""
    bos = [tokenizer.bos_token_id] if wants_bos(tokenizer, None) else []
    examples = []
    for item in items:
        if not isinstance(item, Document):
            raise DataError(f"{item.location}: stage=pt trains on raw text; give rows with a 'text' column or "
                            ".txt files (or use stage=sft for conversations)")
        ids = bos + tokenizer(item.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for start in range(0, len(ids), cutoff_len):
            chunk = ids[start:start + cutoff_len]
            if len(chunk) > 1:  # a single token predicts nothing
                examples.append(Example(chunk, list(chunk)))
    if items and not examples:
        raise DataError(f"{split}: the documents hold no text to train on")
    return examples
