"""Masking: the tokens that carry a loss are exactly the answers, each followed by the end-of-answer token."""

import pytest

from tunesmith.config import load_config
from tunesmith.data.dataset import encode_conversation, wants_bos
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


# --- named templates and the families' own templates -------------------------------------------------------------

from tests.families.families import FAMILIES, family_tokenizer
from tunesmith.data.templates import FORMATS, recognize

CONVERSATIONS = [
    [{"role": "user", "content": "Hours?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hours?"}],
    [{"role": "user", "content": "Hours?"}, {"role": "assistant", "content": "8 to 9."},
     {"role": "user", "content": "주말에도?"}, {"role": "assistant", "content": "네."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hours?"},
     {"role": "assistant", "content": "8 to 9."}, {"role": "user", "content": "주말에도?"}],
]
RECOGNISED_AS = {"llama3": "llama3", "qwen25": "chatml", "qwen3": "qwen3", "mistral": "mistral", "gemma2": "gemma",
                 "gemma3": "gemma", "phi3": "phi3", "smollm2": "chatml", "exaone4": "exaone4",
                 "gemma3vl": "gemma", "tinyllama": "zephyr"}
CHAT_FAMILIES = [f for f in FAMILIES if not f.no_template]


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_named_template_renders_its_description_and_is_recognised(name, tokenizer):
    """One ChatFormat is the whole template: its Jinja renders exactly its description, with and without an opened
    answer, and recognition maps the Jinja back to it (no two named templates render alike)."""
    template = get_template(name, tokenizer)
    for conversation in CONVERSATIONS:
        for opening in (True, False):
            assert template.render(tokenizer, conversation, opening) == template.format.render(conversation, opening)
    assert recognize(tokenizer, template.chat_template).name == name


@pytest.mark.parametrize("family", CHAT_FAMILIES, ids=[f.slug for f in CHAT_FAMILIES])
def test_each_familys_own_template_is_recognised_and_answers_end_with_its_end_of_turn(family, embedded_dir):
    tokenizer = family_tokenizer(embedded_dir, family)
    assert recognize(tokenizer).name == RECOGNISED_AS[family.slug]
    template = get_template("auto", tokenizer)
    assert template.stop == family.end_of_turn and template.chat_template == family_tokenizer(
        embedded_dir, family).chat_template
    refuses_system = family.slug in ("gemma2", "mistral")  # see test_templates_that_cannot_carry_a_system_prompt
    conv = Conversation(CONVERSATIONS[2], system=None if refuses_system else "Be brief.")
    ex = encode_conversation(conv, template, tokenizer, cutoff_len=1024)
    thinks = "<think>\n\n</think>\n\n" if family.slug == "qwen3" else ""  # the last answer's, trained with it
    assert [tokenizer.decode(s) for s in answer_spans(ex)] == [f"8 to 9.{family.end_of_turn}",
                                                               f"{thinks}네.{family.end_of_turn}"]
    # The last answer follows exactly the prompt chat sends for that turn (Qwen3 and Phi-3 rewrite earlier turns).
    messages = ([{"role": "system", "content": conv.system}] if conv.system else []) + conv.messages
    prompt = template.render(tokenizer, messages[:-1], add_generation_prompt=True)
    answer_at = max(i for i, label in enumerate(ex.labels) if label != IGNORE and ex.labels[i - 1] == IGNORE)
    bos = [tokenizer.bos_token_id] if wants_bos(tokenizer, template) else []
    sent = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]  # decoded alike: sentencepiece's spaces
    assert tokenizer.decode(ex.input_ids[:answer_at]) == tokenizer.decode(sent)
    assert ex.input_ids[answer_at - 3:answer_at] == sent[-3:]  # the answer follows the very tokens chat ends with


@pytest.mark.parametrize("slug, error, named, start", [
    ("gemma2", "System role not supported.*template=gemma", "gemma",
     "<bos><start_of_turn>user\nYou are a support bot.\n\nWhat"),
    ("mistral", "drops the system prompt.*mistral", "mistral", "<s>[INST]What are the support hours?[/INST]8 AM")])
def test_templates_that_cannot_carry_a_system_prompt(slug, error, named, start, embedded_dir):
    """Gemma 2's template refuses a system message; Mistral's writes it only while a question is open, so an
    answer would be trained without it. Both say so in one line; the named template carries the system prompt."""
    from tunesmith.errors import ConfigError

    tokenizer = family_tokenizer(embedded_dir, next(f for f in FAMILIES if f.slug == slug))
    with pytest.raises(ConfigError, match=error):
        encode_conversation(MULTI, get_template("auto", tokenizer), tokenizer, cutoff_len=1024)
    ex = encode_conversation(MULTI, get_template(named, tokenizer), tokenizer, cutoff_len=1024)
    assert tokenizer.decode(ex.input_ids).startswith(start)


def test_qwen3_thinking_on_and_off(tokenizer):
    """Both train the same final answer after Qwen3's empty think block; chat opens the answer differently."""
    conv = Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    on, off = get_template("qwen3", tokenizer), get_template("qwen3_nothink", tokenizer)
    thinking, direct = encode_conversation(conv, on, tokenizer, 64), encode_conversation(conv, off, tokenizer, 64)
    # The same text; only who writes the empty block differs.
    assert tokenizer.decode(thinking.input_ids) == tokenizer.decode(direct.input_ids)
    assert [tokenizer.decode(s) for s in answer_spans(thinking)] == ["<think>\n\n</think>\n\nHello!<|im_end|>"]
    assert [tokenizer.decode(s) for s in answer_spans(direct)] == ["Hello!<|im_end|>"]
    chat = [{"role": "user", "content": "Hi"}]
    assert on.render(tokenizer, chat, True).endswith("<|im_start|>assistant\n")
    assert off.render(tokenizer, chat, True).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def bare_tokenizer():
    """A byte-level BPE vocabulary whose only special token is <|endoftext|> (GPT-NeoX / Polyglot-ko style)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["### 질문: 고객센터 운영 시간? ### 답변: 매일 운영해요."] * 3, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


@pytest.mark.parametrize("slug, chosen", [("smollm2", "chatml"), ("llama3", "llama3"), (None, "alpaca")])
def test_a_base_model_without_template_gets_the_one_its_vocabulary_fits_and_says_so(slug, chosen, embedded_dir,
                                                                                   caplog):
    tokenizer = family_tokenizer(embedded_dir, next(f for f in FAMILIES if f.slug == slug)) if slug else \
        bare_tokenizer()
    tokenizer.chat_template = None
    with caplog.at_level("INFO", logger="tunesmith.data.templates"):
        assert get_template("auto", tokenizer).name == chosen
    assert f"using template={chosen}" in caplog.text and "no chat template" in caplog.text


def test_a_sentencepiece_conversation_reads_as_one_pass_without_a_space_before_each_piece(embedded_dir):
    """Tokenized piece by piece, Llama 2's vocabulary (TinyLlama, Mistral 7B, SOLAR/EEVE) starts every piece with `▁`:
    the model learned "▁8" after "<|assistant|>\\n", where chat reads and writes "8"."""
    tokenizer = family_tokenizer(embedded_dir, next(f for f in FAMILIES if f.slug == "tinyllama"))
    template = get_template("auto", tokenizer)
    conv = Conversation(CONVERSATIONS[2], system="Be brief.")
    ex = encode_conversation(conv, template, tokenizer, cutoff_len=1024)
    whole = template.render(tokenizer, [{"role": "system", "content": conv.system}, *conv.messages])
    assert ex.input_ids == tokenizer(whole)["input_ids"]
    first = [tokenizer.convert_ids_to_tokens(span[0]) for span in answer_spans(ex)]
    assert not any(t.startswith("\u2581") for t in first), first
