"""The model card (README.md) of an export: what it was trained from and on, how, how well, and how to load it.

Everything in it comes from the run directory (config.yaml, trainer_log.jsonl, adapter_config.json). It is meant to
be pushed to a hub, so local paths are cut to folder names and nothing secret is ever read: the config refuses
token keys at load time, and the environment is not consulted at all.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.export.naming import EMBEDDED_HUB_ID, is_hub_id, public_base_name, public_name
from tunesmith.model.methods import method_class
from tunesmith.run import RunDir
from tunesmith.stages import stage_class

HYPER = ("learning_rate", "lr_scheduler", "warmup_steps", "warmup_ratio", "max_steps", "num_epochs",
         "per_device_batch_size", "gradient_accumulation_steps", "cutoff_len", "optimizer", "weight_decay",
         "max_grad_norm", "seed", "dtype", "template", "train_on_prompt")


def _datasets(info: RunDir) -> list[str]:
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


def _results(info: RunDir) -> list[str]:
    lines = []
    train = info.log.final("loss")
    evals = info.log.final("eval_loss")
    if train:
        lines.append(f"- final train loss: **{train[1]:.4f}** (step {train[0]})")
    if evals:
        lines.append(f"- final eval loss: **{evals[1]:.4f}** (step {evals[0]})")
    accuracy = info.log.final("eval_accuracy")
    if accuracy:
        lines.append(f"- final eval accuracy: **{accuracy[1]:.3f}**")
    done = info.log.final("train_runtime_s")
    if done:
        lines.append(f"- training time: {done[1]:.0f} s")
    return lines or ["- no training log was found in the run directory"]


def card_text(info: RunDir, out: Path, exporter, options, written, repo_id: str | None = None) -> str:
    """`exporter` (export/formats) says how the weights are packaged and loaded; the run says everything else."""
    base = public_base_name(info)
    method, stage = info.method, info.stage
    stage_cls = stage_class(stage)
    front = ["---"]
    if is_hub_id(base):
        front.append(f"base_model: {base}")
    library = exporter.library_name
    front += [f"library_name: {library}",
              "pipeline_tag: " + ("text-classification" if info.is_reward else "text-generation"),
              f"tags: [tunesmith, {method}, {stage}" + (f", {library}" if library != "transformers" else "") + "]",
              "---", ""]
    title = repo_id.split("/")[-1] if repo_id else out.name
    origin = " (the embedded GGUF build, de-quantized from Q4_1)" if base == EMBEDDED_HUB_ID and info.config \
        is not None and not info.config.model else ""
    merged = "adapter merged into the base weights" if info.adapter is not None else "complete model"
    packaging = exporter.packaging(options)
    body = [f"# {title}", "",
            (f"Fine-tuned from **{base}**{origin} with tunesmith - method `{method}`, stage `{stage}` "
             f"({stage_cls.description}); {merged}; {packaging}."), "", "## Training data", ""]
    body += [f"- {name}" for name in _datasets(info)] or ["- not recorded"]
    body += ["", "## Hyper-parameters", "", "| setting | value |", "|---|---|"]
    if info.config is not None:
        # The common settings, then those the method and the stage read (their registries say which).
        keys = HYPER + tuple(k for k in method_class(method).keys + stage_cls.keys if k not in HYPER)
        body += [f"| {key} | {_value(getattr(info.config, key))} |" for key in keys]
    elif info.adapter is not None:
        body += [f"| lora_rank | `{info.adapter.get('r')}` |", f"| lora_alpha | `{info.adapter.get('lora_alpha')}` |"]
    body += ["", "## Results", "", *_results(info), "", "## How to load", "",
             exporter.how_to_load(info, repo_id or f"./{out.name}", options, written)]
    return "\n".join(front + body)


def write_card(out: Path, info: RunDir, exporter, options, written, repo_id: str | None = None) -> Path:
    path = out / "README.md"
    path.write_text(card_text(info, out, exporter, options, written, repo_id), encoding="utf-8")
    return path
