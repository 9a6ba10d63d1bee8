"""The model card (README.md) of an export: what it was trained from and on, how, how well, and how to load it.

Everything in it comes from the run directory (config.yaml, trainer_log.jsonl, adapter_config.json). It is meant to
be pushed to a hub, so local paths are cut to folder names and nothing secret is ever read: the config refuses
token keys at load time, and the environment is not consulted at all.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.export.run import EMBEDDED_HUB_ID, RunInfo, is_hub_id, public_name

HYPER = ("learning_rate", "lr_scheduler", "warmup_steps", "max_steps", "num_epochs", "per_device_batch_size",
         "gradient_accumulation_steps", "cutoff_len", "optimizer", "weight_decay", "max_grad_norm", "seed", "dtype",
         "template", "train_on_prompt")
BY_METHOD = {"lora": ("lora_rank", "lora_alpha", "lora_dropout", "lora_target"),
             "dora": ("lora_rank", "lora_alpha", "lora_dropout", "lora_target"),
             "qlora": ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "quantization_bit",
                       "quantization_type", "double_quantization"),
             "freeze": ("freeze_layers", "freeze_modules"), "full": ()}
STAGES = {"sft": "supervised fine-tuning on conversations", "pt": "continued pre-training on raw text",
          "rm": "reward model (scalar score head, pairwise loss)", "dpo": "direct preference optimisation"}


def _datasets(info: RunInfo) -> list[str]:
    if info.config is None:
        return []
    names = []
    for key in ("dataset", "val_dataset"):
        value = getattr(info.config, key)
        for item in [value] if isinstance(value, str) else value or []:
            names.append(public_name(item) + (" (validation)" if key == "val_dataset" else ""))
    return names


def _value(value) -> str:
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"`{value}`"


def _results(info: RunInfo) -> list[str]:
    lines = []
    train = info.final("loss")
    evals = info.final("eval_loss")
    if train:
        lines.append(f"- final train loss: **{train[1]:.4f}** (step {train[0]})")
    if evals:
        lines.append(f"- final eval loss: **{evals[1]:.4f}** (step {evals[0]})")
    accuracy = info.final("eval_accuracy")
    if accuracy:
        lines.append(f"- final eval accuracy: **{accuracy[1]:.3f}**")
    done = info.final("train_runtime_s")
    if done:
        lines.append(f"- training time: {done[1]:.0f} s")
    return lines or ["- no training log was found in the run directory"]


def _how_to_load(info: RunInfo, where: str, fmt: str, gguf_name: str | None, bits: int | None) -> str:
    if fmt == "gguf":
        stem = Path(gguf_name or "model.gguf").stem.split(".")[0]
        return (f"llama.cpp:\n\n```bash\nllama-cli -m {gguf_name} -cnv\n```\n\n"
                f"Ollama (the `Modelfile` carries the training chat template and stop token):\n\n"
                f"```bash\nollama create {stem} -f Modelfile\nollama run {stem}\n```\n")
    if info.is_reward:
        return ("```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n'
                f'model = AutoModelForSequenceClassification.from_pretrained("{where}")\n'
                'chat = [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]\n'
                "inputs = tokenizer.apply_chat_template(chat, return_tensors=\"pt\", return_dict=True)\n"
                "print(model(**inputs).logits[0, 0].item())  # higher = preferred\n```\n")
    note = f"  # {bits}-bit weights; needs bitsandbytes" if bits else ""
    return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n'
            f'model = AutoModelForCausalLM.from_pretrained("{where}"){note}\n'
            'inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}],\n'
            '                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)\n'
            "answer = model.generate(**inputs, max_new_tokens=64)[0][inputs[\"input_ids\"].shape[1]:]\n"
            "print(tokenizer.decode(answer, skip_special_tokens=True))\n```\n")


def card_text(info: RunInfo, out: Path, fmt: str = "hf", quant: str | None = None, bits: int | None = None,
              gguf_name: str | None = None, repo_id: str | None = None) -> str:
    base = info.base_name
    method, stage = info.method, info.stage
    front = ["---"]
    if is_hub_id(base):
        front.append(f"base_model: {base}")
    front += ["library_name: " + ("gguf" if fmt == "gguf" else "transformers"),
              "pipeline_tag: " + ("text-classification" if info.is_reward else "text-generation"),
              f"tags: [tunesmith, {method}, {stage}" + (", gguf" if fmt == "gguf" else "") + "]", "---", ""]
    title = repo_id.split("/")[-1] if repo_id else out.name
    origin = " (the embedded GGUF build, de-quantized from Q4_1)" if base == EMBEDDED_HUB_ID and info.config \
        is not None and not info.config.model else ""
    merged = "adapter merged into the base weights" if info.adapter is not None else "complete model"
    if fmt == "gguf":
        packaging = f"GGUF, {quant.upper()}, for llama.cpp / Ollama / LM Studio"
    elif bits:
        packaging = f"{bits}-bit bitsandbytes weights"
    else:
        packaging = "safetensors"
    body = [f"# {title}", "",
            (f"Fine-tuned from **{base}**{origin} with tunesmith - method `{method}`, stage `{stage}` "
             f"({STAGES.get(stage, stage)}); {merged}; {packaging}."), "", "## Training data", ""]
    body += [f"- {name}" for name in _datasets(info)] or ["- not recorded"]
    body += ["", "## Hyper-parameters", "", "| setting | value |", "|---|---|"]
    if info.config is not None:
        keys = HYPER + BY_METHOD.get(method, ()) + (("beta",) if stage == "dpo" else ())
        body += [f"| {key} | {_value(getattr(info.config, key))} |" for key in keys]
    elif info.adapter is not None:
        body += [f"| lora_rank | `{info.adapter.get('r')}` |", f"| lora_alpha | `{info.adapter.get('lora_alpha')}` |"]
    body += ["", "## Results", "", *_results(info), "", "## How to load", "",
             _how_to_load(info, repo_id or f"./{out.name}", fmt, gguf_name, bits)]
    return "\n".join(front + body)


def write_card(out: Path, info: RunInfo, **kwargs) -> Path:
    path = out / "README.md"
    path.write_text(card_text(info, out, **kwargs), encoding="utf-8")
    return path
