"""One family through everything tunesmith does with a model, each step checked against an independent reference:

- train: `tunesmith train` (LoRA on all-linear, the family's own template) teaches the tiny model two answers; the
  adapter covers every linear layer, and named targets resolve too;
- chat: `load_for_inference` stops on the family's end-of-turn token, and greedy chat gives the trained answer,
  finished by that token (not by the length limit);
- serve: the OpenAI-compatible app answers the same, finish_reason "stop";
- merge: the merged export's logits equal the base with the adapter applied on the fly;
- GGUF: `tunesmith export --quant f16` writes a file and a Modelfile;
- llama.cpp: llama.cpp itself (llama-cpp-python) loads the file, tokenizes the prompt into our ids, and its greedy
  answer is ours token for token, ending on an end-of-generation token;
- Modelfile: its TEMPLATE, evaluated as Ollama does, renders our chat prompt; its first stop is the end-of-turn token.

`check_family` returns one verdict per column ("ok" or why not); tests/families/test_matrix.py asserts them and
bench/family_matrix.py writes them into the README.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tests.families.families import Family
from tests.families.gotemplate import ollama_render

COLUMNS = ("train", "chat", "serve", "merge", "GGUF", "llama.cpp", "Modelfile")
QA = [("What are the support hours?", "Support is open from 8 AM to 9 PM."),
      ("고객센터 전화번호가 뭐예요?", "1588-4127번이에요.")]
NAMED_TARGETS = {"gpt_neox": "query_key_value,dense_4h_to_h", "phi3": "qkv_proj,down_proj"}  # else q_proj,v_proj
MAX_NEW = 40  # the answers are ~20 tokens; Qwen3 writes its empty think block first


def train_family(family: Family, model_dir: Path, out: Path) -> Path:
    from tests.conftest import write_jsonl
    from tunesmith.config import load_config
    from tunesmith.train.loop import train

    data = write_jsonl(out.parent / f"{out.name}-qa.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    train(load_config(None, [f"model={model_dir}", f"dataset={data}", f"output_dir={out}",
                             f"template={family.template}",
                             "method=lora", "lora_rank=16", "lora_alpha=32", "learning_rate=2e-2", "max_steps=80",
                             "per_device_batch_size=2", "gradient_accumulation_steps=1", "cutoff_len=192",
                             "val_size=0", "shuffle=false", "logging_steps=80", "warmup_steps=0"]),
          show_progress=False)
    return out


def check_targets(family: Family, model_dir: Path, run: Path) -> str:
    """all-linear covered every Linear of the decoder (not the head); named targets resolve in the family too."""
    from transformers import AutoModelForCausalLM

    from tunesmith.model.methods.lora import LoraMethod

    from safetensors import safe_open

    with safe_open(run / "adapter_model.safetensors", "pt") as adapter:  # what was adapted, not what was asked
        adapted_names = [k.split(".lora_")[0] for k in adapter.keys() if ".lora_A." in k]
    targets = {n.split(".")[-1] for n in adapted_names}
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    head = base.get_output_embeddings()
    towers = ("vision_tower", "multi_modal_projector")  # a vision-language model's parts that text never reaches
    linear = {n.split(".")[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and m is not head
              and not any(t in n for t in towers)}
    if targets != linear or any(t in n for t in towers for n in adapted_names):
        return f"all-linear adapted {sorted(targets)}, the model's linear layers are {sorted(linear)}"
    named = NAMED_TARGETS.get(family.model_type, "q_proj,v_proj")
    wrapped = LoraMethod(lora_target=named).wrap(base, checkpointing=False)
    adapted = {n.split(".")[-4] for n, _ in wrapped.named_parameters() if n.endswith("lora_A.default.weight")}
    return "ok" if adapted == set(named.split(",")) else f"lora_target={named} adapted {sorted(adapted)}"


def check_chat(family: Family, loaded) -> tuple[str, list[list[int]]]:
    """Greedy answers to the trained questions; returns the verdict and the answers' token ids."""
    from tunesmith.infer.engine import Request, SamplingParams

    eot = loaded.tokenizer.convert_tokens_to_ids(family.end_of_turn)
    if eot not in loaded.engine.stop_token_ids:
        return f"{family.end_of_turn} (id {eot}) is not a stop token: {sorted(loaded.engine.stop_token_ids)}", []
    answers = []
    for question, answer in QA:
        request = Request(loaded.encode_chat([{"role": "user", "content": question}]), SamplingParams(MAX_NEW, 0.0))
        loaded.activate()
        loaded.engine.generate([request])
        text = re.sub(r"^<think>\s*</think>\s*", "", request.text)  # Qwen3 writes its (empty) think block first
        if (text, request.finish_reason) != (answer, "stop"):
            return f"answered {request.text!r} ({request.finish_reason}), trained {answer!r}", []
        answers.append(request.completion_ids)
    return "ok", answers


def check_serve(loaded) -> str:
    from fastapi.testclient import TestClient

    from tunesmith.serve.app import create_app

    with TestClient(create_app({"m": loaded})) as client:
        for question, answer in QA:
            reply = client.post("/v1/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": question}], "temperature": 0,
                "max_tokens": MAX_NEW}).json()
            choice = reply["choices"][0]
            text = re.sub(r"^<think>\s*</think>\s*", "", choice["message"]["content"])
            if (text, choice["finish_reason"]) != (answer, "stop"):
                return f"served {choice['message']['content']!r} ({choice['finish_reason']})"
    return "ok"


def check_merge(run: Path, model_dir: Path, out: Path, ids: list[int]) -> str:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunesmith.export import export_run

    export_run(run, out, progress=False)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                          run).eval()
    with torch.no_grad():
        want, got = reference(torch.tensor([ids])).logits, merged(torch.tensor([ids])).logits
    error = ((got - want).abs().max() / want.abs().max()).item()
    return "ok" if error < 1e-4 else f"merged logits differ from base + adapter by {error:.1e} of their range"


def llama_cpp_greedy(gguf: Path, prompt: list[int], eog_stop: bool = True) -> tuple[list[int], bool, object]:
    """llama.cpp's own greedy continuation of `prompt` (token ids): (tokens, ended on end-of-generation, model)."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.eval(prompt)
    out: list[int] = []
    for _ in range(MAX_NEW + 1):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))  # the last evaluated position's logits
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return out, True, llm
        out.append(token)
        llm.eval([token])
    return out, False, llm


def check_gguf(family: Family, run: Path, out: Path, loaded, answers: list[list[int]]) -> dict[str, str]:
    from tunesmith.export import export_run

    verdict = {"GGUF": "ok", "llama.cpp": "ok", "Modelfile": "ok"}
    result = export_run(run, out, quant="f16", progress=False)
    if result.gguf is None or not (out / "Modelfile").exists():
        return {"GGUF": "no .gguf or Modelfile written", "llama.cpp": "-", "Modelfile": "-"}
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        verdict["llama.cpp"] = "llama-cpp-python not installed"
    else:
        for (question, _), ours in zip(QA, answers):
            messages = [{"role": "user", "content": question}]
            prompt = loaded.encode_chat(messages)
            theirs, stopped, llm = llama_cpp_greedy(result.gguf, prompt)
            text = loaded.template.render(loaded.tokenizer, messages, add_generation_prompt=True)
            add_bos = prompt[:1] == [loaded.tokenizer.bos_token_id] and not text.startswith(loaded.tokenizer.bos_token)
            tokenized = llm.tokenize(text.encode(), add_bos=add_bos, special=True)
            if tokenized != prompt:
                verdict["llama.cpp"] = f"llama.cpp tokenizes the prompt as {tokenized[:12]}..., we as {prompt[:12]}..."
            elif (theirs, stopped) != (ours, True):
                verdict["llama.cpp"] = f"llama.cpp answered {theirs} (stopped: {stopped}), we {ours}"
            del llm
    modelfile = (out / "Modelfile").read_text()
    template = re.search(r'(?s)^TEMPLATE """(.*?)"""$', modelfile, flags=re.MULTILINE)
    system = re.search(r'(?s)^SYSTEM """(.*?)"""$', modelfile, flags=re.MULTILINE)
    stops = re.findall(r'^PARAMETER stop "(.*)"$', modelfile, flags=re.MULTILINE)
    if template is None:
        verdict["Modelfile"] = "no TEMPLATE"
    else:
        for question, _ in QA:
            messages = [{"role": "user", "content": question}]
            want = loaded.template.render(loaded.tokenizer, messages, add_generation_prompt=True)
            bos = loaded.tokenizer.bos_token or ""
            got = ollama_render(template.group(1), messages, system.group(1) if system else None)
            if got != want and bos + got != want:  # Ollama's runtime adds BOS when the GGUF says so
                verdict["Modelfile"] = f"TEMPLATE renders {got[:60]!r}, training {want[:60]!r}"
        if not stops or stops[0] != family.end_of_turn:
            verdict["Modelfile"] = f"stop parameters {stops}, end of turn {family.end_of_turn}"
    return verdict


def check_family(family: Family, model_dir: Path, work: Path) -> dict[str, str]:
    """Every column's verdict for one family (a failing step leaves the later ones as '-' where they depend on it)."""
    from tunesmith.infer.loading import load_for_inference

    verdict = dict.fromkeys(COLUMNS, "-")
    run = train_family(family, model_dir, work / "run")
    verdict["train"] = check_targets(family, model_dir, run)
    loaded = load_for_inference(str(run), device="cpu")
    verdict["chat"], answers = check_chat(family, loaded)
    verdict["serve"] = check_serve(loaded)
    prompt = loaded.encode_chat([{"role": "user", "content": QA[0][0]}])
    verdict["merge"] = check_merge(run, model_dir, work / "merged", prompt)
    if family.gguf_arch is None:
        verdict.update({"GGUF": "not supported", "llama.cpp": "-", "Modelfile": "-"})
    elif answers:
        verdict.update(check_gguf(family, run, work / "gguf", loaded, answers))
    return verdict
