"""From data files to encoded train/validation examples.

Two phases on purpose: `load_items` reads and checks every row before any model is loaded (a bad row costs the
user one second, not a model load), and the stage encodes the rows with the model's tokenizer and template
(`encode_items` for conversations, `encode_documents` for raw text).
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tunesmith.data.formats import Conversation, Document, Preference, to_canonical
from tunesmith.data.packing import IGNORE, Example
from tunesmith.data.sources import read_rows
from tunesmith.data.templates import Template
from tunesmith.errors import DataError

log = logging.getLogger(__name__)
Item = Conversation | Document | Preference
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")  # {{name}}: a slot of a template meant to be filled


@dataclass
class DataSpec:
    """Where the rows come from and how they are split (the data keys of the training config)."""

    dataset: str | list[str]
    val_dataset: str | list[str] | None = None
    val_size: float = 0.0
    dataset_format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    system: str | None = None
    seed: int = 42
    shuffle: bool = True
    max_samples: int = 0

    @classmethod
    def from_settings(cls, settings) -> "DataSpec":
        """From any object with these attributes (the training config)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


@dataclass
class Splits:
    train: list[Item]
    val: list[Item]


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _load(sources: list[str], spec: DataSpec, checked: Callable[[list[Item]], list[Item]] | None,
          split: str = "train") -> list[Item]:
    items: list[Item] = []
    for source in sources:
        items += to_canonical(read_rows(source, split), spec.dataset_format, spec.columns, spec.system)
    return checked(items) if checked else items  # here, before any model or tokenizer loads


def load_items(spec: DataSpec, checked: Callable[[list[Item]], list[Item]] | None = None) -> Splits:
    """Every row, as the stage reads it and checked (`checked`, the stage's: a DataError names a row it cannot
    train on), then split. With `shuffle=False` the rows keep file order and validation rows come from the end."""
    train = _load(_as_list(spec.dataset), spec, checked)
    if spec.shuffle:
        random.Random(spec.seed).shuffle(train)
    if spec.val_dataset:
        val = _load(_as_list(spec.val_dataset), spec, checked, "validation")
    else:
        n_val = int(spec.val_size) if spec.val_size >= 1 else round(len(train) * spec.val_size)
        n_val = max(n_val, spec.val_size > 0)  # a fraction asked for validation: never none (0.1 of 4 rows)
        if n_val >= len(train):
            raise DataError(f"{_as_list(spec.dataset)[0]}: val_size={spec.val_size} leaves no training rows "
                            f"out of {len(train)}; lower val_size")
        cut = len(train) - n_val if not spec.shuffle else n_val
        val, train = (train[cut:], train[:cut]) if not spec.shuffle else (train[:cut], train[cut:])
    if spec.max_samples:
        train = train[: spec.max_samples]
    return Splits(train, val)


def encode_conversation(conv: Conversation, template: Template, tokenizer, cutoff_len: int,
                        train_on_prompt: bool = False) -> Example | None:
    ids: list[int] = []
    labels: list[int] = []
    if wants_bos(tokenizer, template):
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE)
    pieces = template.segments(tokenizer, conv.messages, conv.system)
    for token, trained in _tokenize_pieces(tokenizer, pieces):
        ids.append(token)
        labels.append(token if (trained or train_on_prompt) else IGNORE)
    ids, labels = ids[:cutoff_len], labels[:cutoff_len]
    if all(label == IGNORE for label in labels[1:]):
        return None  # the answer was cut off entirely: nothing to learn from this row
    return Example(ids, labels)


def _tokenize_pieces(tokenizer, pieces: list[tuple[str, bool]]) -> list[tuple[int, bool]]:
    """(token id, is answer) for the conversation, each piece read as it continues the piece before it, as chat and
    serving read a whole prompt in one pass. Tokenized alone, a piece of a sentencepiece vocabulary with a leading
    space (Llama 2, TinyLlama, Mistral 7B, SOLAR/EEVE) starts with `▁`: the model would learn "▁8" after a newline
    where at inference it reads and writes "8". So a piece's tokens are what tokenizing it together with the previous
    piece adds after that piece's own tokens; where the two split differently across the boundary (GPT-2-style
    splitting reads the "\n\n" before "네" as two tokens, at the end of a prompt as one), the piece alone, which is
    how a prompt ending there is read."""
    texts = [text for text, _ in pieces]
    encoded = tokenizer(texts + [a + b for a, b in zip(texts, texts[1:])], add_special_tokens=False)["input_ids"]
    alone, joined = encoded[:len(texts)], encoded[len(texts):]
    out: list[tuple[int, bool]] = []
    for i, (_, trained) in enumerate(pieces):
        tokens = alone[i]
        if i and joined[i - 1][:len(alone[i - 1])] == alone[i - 1]:
            tokens = joined[i - 1][len(alone[i - 1]):]
        out += [(token, trained) for token in tokens]
    return out


def wants_bos(tokenizer, template: Template | None) -> bool:
    """Prepend BOS when the tokenizer normally adds one and the template does not write it itself."""
    bos = tokenizer.bos_token_id
    if bos is None or (template is not None and "bos_token" in template.chat_template):
        return False
    return tokenizer("a")["input_ids"][:1] == [bos]


def encode_items(items: list[Item], template: Template, tokenizer, cutoff_len: int, train_on_prompt: bool,
                 split: str) -> list[Example]:
    """Conversations -> examples with the loss on the answers (and prompts with train_on_prompt)."""
    examples, dropped, truncated = [], 0, 0
    for item in items:
        if not isinstance(item, Conversation):  # the stage checked rows on load; this guards direct callers
            raise DataError(f"{item.location}: a {type(item).__name__.lower()} row is not a conversation; use "
                            "instruction/output, conversations or messages rows")
        ex = encode_conversation(item, template, tokenizer, cutoff_len, train_on_prompt)
        if ex is None:
            dropped += 1
            continue
        truncated += len(ex) == cutoff_len
        examples.append(ex)
    if dropped:
        log.warning("%s: %d rows dropped: their answer starts after cutoff_len=%d tokens", split, dropped, cutoff_len)
    if truncated:
        log.warning("%s: %d rows truncated to cutoff_len=%d tokens", split, truncated, cutoff_len)
    if items and not examples:
        raise DataError(f"{split}: no row fits cutoff_len={cutoff_len}; raise cutoff_len")
    return examples


def encode_documents(items: list[Item], tokenizer, cutoff_len: int, split: str) -> list[Example]:
    """Raw text for pretraining: document + EOS, cut into rows of at most cutoff_len tokens (each its own row in a
    packed micro-batch, so attention never crosses a document boundary)."""
    bos = [tokenizer.bos_token_id] if wants_bos(tokenizer, None) else []
    examples = []
    for item in items:
        if not isinstance(item, Document):
            raise DataError(f"{item.location}: stage=pt trains on raw text; give rows with a 'text' column or "
                            ".txt files (use stage=sft for conversations)")
        ids = bos + tokenizer(item.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for start in range(0, len(ids), cutoff_len):
            chunk = ids[start:start + cutoff_len]
            if len(chunk) > 1:  # a single token predicts nothing
                examples.append(Example(chunk, list(chunk)))
    if items and not examples:
        raise DataError(f"{split}: the documents hold no text to train on")
    return examples


def answer_texts(item: Item) -> list[str]:
    """What training teaches the model to write: the answers (chosen and rejected), or a document."""
    if isinstance(item, Document):
        return [item.text]
    if isinstance(item, Preference):
        return [item.chosen, item.rejected]
    return [m["content"] for m in item.messages if m["role"] == "assistant"]


def unfilled_placeholders(items: list[Item]) -> tuple[int, Counter]:
    """(rows whose answers hold template slots like {{name}}, how many rows hold each): LLaMA-Factory's identity.json
    ships {{name}} and {{author}} to be replaced. Answers with a code block are skipped (templates as code are
    content)."""
    found: Counter = Counter()
    rows = 0
    for item in items:
        names = dict.fromkeys(name for text in answer_texts(item) if "```" not in text  # in order of appearance
                              for name in PLACEHOLDER.findall(text))
        rows += bool(names)
        found.update(list(names))  # (a dict would be read as counts)
    return rows, found
