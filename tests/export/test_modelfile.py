"""The Ollama Modelfile: the training template in Go template syntax, rendering what training rendered."""

import re

import pytest

from tests.families.families import FAMILIES, family_tokenizer
from tests.families.gotemplate import ollama_render
from tunesmith.data.templates import FORMATS, get_template
from tunesmith.export.modelfile import modelfile_text, translate

CHATS = [
    [{"role": "user", "content": "고객센터 운영 시간이 어떻게 되나요?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hours?"},
     {"role": "assistant", "content": "8 AM to 9 PM."}, {"role": "user", "content": "And on Sunday?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
]


def run_go_template(template: str, system: str | None, messages: list[dict]) -> str:
    """Evaluate the TEMPLATE the way Ollama does (tests/families/gotemplate.py: Go's text/template, Ollama's data)."""
    return ollama_render(template, messages, system)


def parse(modelfile: str) -> dict:
    template = re.search(r'(?s)^TEMPLATE """(.*?)"""$', modelfile, flags=re.MULTILINE)
    system = re.search(r'(?s)^SYSTEM """(.*?)"""$', modelfile, flags=re.MULTILINE)
    return {"from": re.search(r"^FROM (.+)$", modelfile, flags=re.MULTILINE).group(1),
            "template": template.group(1) if template else None, "system": system.group(1) if system else None,
            "stop": re.findall(r'^PARAMETER stop "(.*)"$', modelfile, flags=re.MULTILINE)}


@pytest.mark.parametrize("name", ["auto", "chatml", "alpaca", "llama3"])
def test_modelfile_renders_exactly_what_training_rendered(name, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = get_template(name, tokenizer)
    tokenizer.chat_template = template.chat_template  # what training saves into the run (train.loop._save_run)
    tokenizer.eos_token = template.stop
    text, fmt = modelfile_text("faq.Q8_0.gguf", tokenizer, runtime_adds_bos=False)
    parsed = parse(text)
    assert parsed["from"] == "./faq.Q8_0.gguf"
    assert fmt is not None and parsed["template"] is not None
    for chat in CHATS:
        if chat[0]["role"] == "system" and "System role not supported" in tokenizer.chat_template:
            continue  # Gemma 2's own template refuses system prompts (Ollama then writes it as Gemma 3 does)
        expected = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert run_go_template(parsed["template"], parsed["system"], chat) == expected
    assert parsed["stop"][0] == template.stop == "<|im_end|>"  # SmolLM2's end of turn ends every answer
    assert parsed["system"] == {"auto": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                                "alpaca": "Below is an instruction that describes a task. Write a response that "
                                          "appropriately completes the request."}.get(name)
    if name == "alpaca":
        assert "### Instruction:" in parsed["stop"]


def test_bos_is_left_to_the_runtime_when_the_gguf_adds_it(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = get_template("llama3", tokenizer).chat_template
    written, _ = modelfile_text("m.gguf", tokenizer, runtime_adds_bos=False)
    added, _ = modelfile_text("m.gguf", tokenizer, runtime_adds_bos=True)
    assert parse(written)["template"].startswith("<|im_start|>{{ range")  # the template's bos_token, as text
    assert parse(added)["template"].startswith("{{ range")


def test_an_untranslatable_template_leaves_template_to_ollama(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] }}\n{% endfor %}"
    assert translate(tokenizer) is None
    parsed = parse(modelfile_text("m.gguf", tokenizer, runtime_adds_bos=False)[0])
    assert parsed["template"] is None and parsed["stop"] == [tokenizer.eos_token]


def check_modelfile(tokenizer, template) -> dict:
    """Save the template into the tokenizer as training does, write the Modelfile, and check that Ollama would
    render every chat exactly as training rendered it."""
    tokenizer.chat_template = template.chat_template
    if template.stop != tokenizer.eos_token:
        tokenizer.eos_token = template.stop
    text, fmt = modelfile_text("m.Q8_0.gguf", tokenizer, runtime_adds_bos=False)
    parsed = parse(text)
    assert fmt is not None and parsed["template"] is not None, text
    for chat in CHATS:
        if chat[0]["role"] == "system" and "System role not supported" in tokenizer.chat_template:
            continue  # Gemma 2's own template refuses system prompts (Ollama then writes it as Gemma 3 does)
        expected = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert run_go_template(parsed["template"], parsed["system"], chat) == expected
    assert parsed["stop"][0] == template.stop
    return parsed


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_named_template_becomes_an_exact_ollama_template(name, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    check_modelfile(tokenizer, get_template(name, tokenizer))


@pytest.mark.parametrize("family", FAMILIES, ids=[f.slug for f in FAMILIES])
def test_each_familys_template_becomes_an_exact_ollama_template_with_its_stop(family, embedded_dir):
    """The families' own templates (template=auto) through recognition: Llama 3.1's date preamble, Qwen2.5's
    default system prompt, Gemma's system-in-the-first-turn, Mistral's system-in-the-last-turn."""
    tokenizer = family_tokenizer(embedded_dir, family)
    parsed = check_modelfile(tokenizer, get_template(family.template, tokenizer))
    assert parsed["stop"][0] == family.end_of_turn
