"""`tunesmith export` through the real CLI: a GGUF + Modelfile export, a 4-bit export that reloads and generates,
and one-line errors (exit 2) that stop before any work."""

import re

import pytest
import torch

from tests.conftest import run_cli
from tests.export.conftest import PROMPT
from tunesmith.export import export_run


def test_cli_exports_gguf_and_modelfile(small_run, tmp_path):
    out = tmp_path / "faq"
    result = run_cli("export", str(small_run), "--out", str(out), "--quant", "q8_0", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(re.escape(f"{out}/faq.Q8_0.gguf") + r"  \(\d+\.\d KB\)", result.stdout), result.stdout
    assert f"{out}/Modelfile" in result.stdout and "ollama create faq -f Modelfile" in result.stdout
    assert "writing faq.Q8_0.gguf" in result.stderr  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == [".tunesmith-export", "Modelfile", "README.md", "faq.Q8_0.gguf"]
    # Exporting into our own earlier export replaces it cleanly.
    export_run(small_run, out, quant="f16", progress=False)
    assert sorted(p.name for p in out.glob("*.gguf")) == ["faq.F16.gguf"]


@pytest.mark.parametrize("bits", [4, 8])
def test_bitsandbytes_export_reloads_and_generates(bits, small_run, small_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run(small_run, tmp_path / f"q{bits}", bits=bits, progress=False).out
    model = AutoModelForCausalLM.from_pretrained(out)
    layer = type(model.model.layers[0].self_attn.q_proj).__name__
    assert layer == {4: "Linear4bit", 8: "Linear8bitLt"}[bits]
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        logits = model(inputs["input_ids"]).logits.float()
        plain = export_run(small_run, tmp_path / "plain", progress=False).out
        reference = AutoModelForCausalLM.from_pretrained(plain)(inputs["input_ids"]).logits
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
    # nf4 (16 levels per 64-weight block) moves logits by ~6% of their spread here, int8 by ~0.4%.
    rms = ((logits - reference).pow(2).mean().sqrt() / reference.std()).item()
    assert rms < {4: 0.25, 8: 0.03}[bits], rms


def test_cli_errors_are_one_line_and_stop_early(small_run, tmp_path):
    no_token = run_cli("export", str(small_run), "--out", str(tmp_path / "x"), "--push-to-hub", "someone/x",
                       env={"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home")})
    assert no_token.returncode == 2
    assert no_token.stderr.strip().splitlines() == [
        ("error: --push-to-hub needs a Hugging Face token: export HF_TOKEN=... or run `hf auth login` "
         "(tunesmith never stores it)")]
    assert not (tmp_path / "x").exists()  # refused before the merge
    missing = run_cli("export", str(tmp_path / "nope"), "--out", str(tmp_path / "y"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope'}: run directory not found"
