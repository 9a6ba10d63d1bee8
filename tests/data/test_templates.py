"""Masking: the tokens that carry a loss are exactly the answers, each followed by the end-of-answer token."""

import pytest

from tunesmith.config import load_config
from tunesmith.data.dataset import encode_conversation
from tunesmith.data.formats import Conversation
from tunesmith.data.packing import IGNORE
from tunesmith.data.templates import ALPACA_SYSTEM, get_template

MULTI = Conversation([
    {"role": "user", "content": "What are the support hours?"},
    {"role": "assistant", "content": "8 AM to 9 PM, every day."},
    {"role": "user", "content": "주말에도 열어요?"},
    {"role": "assistant", "content": "네, 주말에도 운영해요."},
], system="You are a support bot.")


def answer_spans(ex):
    """Decode each maximal run of trainable label tokens."""
    spans, current = [], []
    for tok, label in zip(ex.input_ids, ex.labels):
        if label != IGNORE:
            assert label == tok
            current.append(tok)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


@pytest.mark.parametrize("name", ["auto", "alpaca", "chatml"])
def test_only_answers_and_eos_are_trained(tokenizer, name):
    template = get_template(name, tokenizer)
    ex = encode_conversation(MULTI, template, tokenizer, cutoff_len=1024)
    spans = [tokenizer.decode(s) for s in answer_spans(ex)]
    assert spans == [f"8 AM to 9 PM, every day.{tokenizer.eos_token}", f"네, 주말에도 운영해요.{tokenizer.eos_token}"]
    # Everything together decodes to the full rendered conversation (nothing dropped or duplicated).
    rendered = template.render(tokenizer, [{"role": "system", "content": MULTI.system}, *MULTI.messages])
    assert tokenizer.decode(ex.input_ids) == rendered


def test_alpaca_matches_the_seed_prompt(tokenizer):
    template = get_template("alpaca", tokenizer)
    conv = Conversation([{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}])
    ex = encode_conversation(conv, template, tokenizer, cutoff_len=1024)
    text = tokenizer.decode(ex.input_ids)
    assert text == (f"{ALPACA_SYSTEM}\n\n### Instruction:\nName a colour.\n\n### Response:\nBlue.{tokenizer.eos_token}"
                    "\n\n")


def test_llama3_template_falls_back_to_eos_when_vocab_lacks_eot(tokenizer):
    template = get_template("llama3", tokenizer)
    assert template.stop == tokenizer.eos_token  # SmolLM2 has no <|eot_id|> token
    conv = Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    spans = answer_spans(encode_conversation(conv, template, tokenizer, cutoff_len=1024))
    assert [tokenizer.decode(s) for s in spans] == [f"Hello!{tokenizer.eos_token}"]


def test_train_on_prompt_and_truncation(tokenizer):
    template = get_template("auto", tokenizer)
    ex = encode_conversation(MULTI, template, tokenizer, cutoff_len=1024, train_on_prompt=True)
    assert all(label != IGNORE for label in ex.labels)
    short = encode_conversation(MULTI, template, tokenizer, cutoff_len=40)
    assert len(short) == 40
    assert encode_conversation(MULTI, template, tokenizer, cutoff_len=5) is None  # no answer left to learn


def test_pad_never_hides_eos_labels(tokenizer):
    """SmolLM2 pads with its EOS; labels come from masks, never from comparing ids with pad."""
    template = get_template("auto", tokenizer)
    ex = encode_conversation(MULTI, template, tokenizer, cutoff_len=1024)
    eos_labels = [label for label in ex.labels if label == tokenizer.eos_token_id]
    assert len(eos_labels) == 2


def test_unknown_template(tokenizer):
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="template='vicuna' is not known"):
        get_template("vicuna", tokenizer)
    assert load_config(None, ["dataset=x", "template=alpaca"]).template == "alpaca"
