"""A new stage, method, export format or template is one module (here: a class in this file) plus one registry
entry - nothing else changes: the config accepts it, `--help` lists it, training, export and the Modelfile use it."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import write_jsonl
from tunesmith.config import describe_keys, load_config
from tunesmith.data.templates import FORMATS, ChatFormat, get_template
from tunesmith.export.formats import EXPORTERS, register_exporter
from tunesmith.export.formats.base import Exporter, Written
from tunesmith.model.methods import METHODS, register_method
from tunesmith.model.methods.base import Method
from tunesmith.stages import STAGES, register_stage
from tunesmith.stages.sft import SFTStage


class ShoutStage(SFTStage):
    """A toy stage: sft whose metrics also count answer tokens (to show the loop logs a stage's own metrics)."""

    name = "shout"
    description = "supervised fine-tuning that also reports its answer tokens"

    def loss(self, model, batch):
        out = super().loss(model, batch)
        out.metrics["answer_tokens"] = float(out.num_targets)
        return out


class NormsOnlyMethod(Method):
    """A toy method: only the RMSNorm weights train; the run holds a complete model."""

    name = "norms"

    def wrap(self, model, checkpointing: bool, heads=()):
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith("norm.weight"))
        return model


class ShapesExporter(Exporter):
    """A toy export format: a JSON file with every tensor's shape."""

    name = "shapes"

    def write(self, model, tokenizer, run, out, options, progress):
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        (out / "shapes.json").write_text(json.dumps(shapes))
        return Written()

    def packaging(self, options):
        return "tensor shapes as JSON"

    def how_to_load(self, run, where, options, written):
        return "`json.load(open('shapes.json'))`\n"


@pytest.fixture
def registered():
    before = (dict(STAGES), dict(METHODS), dict(EXPORTERS), dict(FORMATS))
    register_stage("shout", ShoutStage)
    register_method("norms", NormsOnlyMethod)
    register_exporter("shapes", ShapesExporter)
    FORMATS["bracket"] = ChatFormat("bracket", {"system": ("[S] ", "\n"), "user": ("[U] ", "\n"),
                                                "assistant": ("[A] ", "{eos}\n")}, "[A] ")
    yield
    for table, saved in zip((STAGES, METHODS, EXPORTERS, FORMATS), before):
        table.clear()
        table.update(saved)


def test_new_stage_method_format_and_template_work_end_to_end(registered, tiny_model_dir, tmp_path):
    from tunesmith.export import export_run
    from tunesmith.export.modelfile import translate
    from tunesmith.train.loop import train

    keys = describe_keys()
    assert "shout" in keys and "norms" in keys and "bracket" in keys
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Q?", "output": "A."}] * 8)
    out = tmp_path / "run"
    cfg = load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={out}", "stage=shout",
                             "method=norms", "template=bracket", "max_steps=2", "learning_rate=1e-2"])
    before = {n: p.clone() for n, p in __import__("transformers").AutoModelForCausalLM.from_pretrained(
        tiny_model_dir).state_dict().items()}
    train(cfg, show_progress=False)
    lines = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert lines[1]["answer_tokens"] > 0  # the stage's own metric, logged by the shared loop
    from safetensors.torch import load_file

    after = load_file(out / "model.safetensors")
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed and all(n.endswith("norm.weight") for n in changed)  # the method trained only the norms

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True) == "[U] hi\n[A] "
    assert translate(tokenizer).name == "bracket"  # the Modelfile comes from the same description
    assert get_template("bracket", tokenizer).stop == tokenizer.eos_token

    result = export_run(out, tmp_path / "export", fmt="shapes", progress=False)
    assert json.loads((result.out / "shapes.json").read_text())["model.norm.weight"] == [64]
    card = (result.out / "README.md").read_text()
    assert "stage `shout` (supervised fine-tuning that also reports its answer tokens)" in card
    assert "tensor shapes as JSON" in card and "method `norms`" in card
