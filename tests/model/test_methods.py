"""Each method trains exactly the parameters it should, leaves the rest bit-identical, and lowers the loss."""

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.model.methods import get_method
from tunesmith.model.methods.base import count_parameters
from tunesmith.train.loop import train

HIDDEN, INTER, KV, LAYERS, R = 64, 128, 32, 2, 4
# (in, out) of q, k, v, o, gate, up, down in the tiny Llama
LINEARS = [(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, KV), (HIDDEN, HIDDEN), (HIDDEN, INTER), (HIDDEN, INTER),
           (INTER, HIDDEN)]


def config(tiny_model_dir, data, out, *extra):
    return load_config(None, [f"model={tiny_model_dir}", f"dataset={data}", f"output_dir={out}", "max_steps=8",
                              "per_device_batch_size=4", "gradient_accumulation_steps=1", "learning_rate=1e-2",
                              "lr_scheduler=constant", f"lora_rank={R}", "lora_alpha=8", *extra])


def attach_adapter(base, cfg):
    return get_method(cfg.method, cfg).wrap(base, checkpointing=False)


def expected_trainable(method, base):
    if method == "full":
        return sum(p.numel() for p in base.parameters())
    if method == "freeze":
        return sum(p.numel() for p in base.model.layers[-1].parameters())
    lora = LAYERS * sum(R * (i + o) for i, o in LINEARS)
    return lora + (LAYERS * sum(o for _, o in LINEARS) if method == "dora" else 0)


@pytest.mark.parametrize("method", ["full", "freeze", "lora", "dora"])
def test_method_trains_what_it_should(tiny_model_dir, alpaca_file, tmp_path, method):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    cfg = config(tiny_model_dir, alpaca_file, tmp_path / method, f"method={method}", "freeze_layers=1")
    model = attach_adapter(base, cfg)
    trainable, _ = count_parameters(model)
    assert trainable == expected_trainable(method, AutoModelForCausalLM.from_pretrained(tiny_model_dir))

    result = train(cfg, show_progress=False)
    assert result.losses[-1] < result.losses[0]
    out = tmp_path / method
    if method in ("lora", "dora"):
        assert (out / "adapter_model.safetensors").exists()
        return
    trained = AutoModelForCausalLM.from_pretrained(out)  # full and freeze save a complete model
    changed = {n for n, p in trained.named_parameters() if not torch.equal(p, before[n])}
    last = f"model.layers.{LAYERS - 1}."
    if method == "freeze":
        assert changed and all(n.startswith(last) for n in changed)  # everything else bit-identical
    else:
        assert any(n.startswith("model.layers.0.") for n in changed)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_adapters_leave_base_weights_bit_identical(tiny_model_dir, alpaca_file, tmp_path, method):
    from transformers import AutoModelForCausalLM

    cfg = config(tiny_model_dir, alpaca_file, tmp_path / "r", "max_steps=3", f"method={method}")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = attach_adapter(base, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids = torch.randint(0, 1000, (1, 12))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    after = dict(model.get_base_model().named_parameters())
    for name, tensor in before.items():
        key = name.replace(".weight", ".base_layer.weight") if name.replace(".weight", ".base_layer.weight") in after \
            else name
        assert torch.equal(after[key], tensor), name


def test_freeze_modules_and_bad_layer_count(tiny_model_dir, alpaca_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunesmith.errors import ConfigError

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = config(tiny_model_dir, alpaca_file, tmp_path, "method=freeze", "freeze_layers=0", "freeze_modules=norm")
    model = attach_adapter(base, cfg)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"model.norm.weight"}
    with pytest.raises(ConfigError, match="freeze_layers=5 but the model has 2 layers"):
        attach_adapter(base, config(tiny_model_dir, alpaca_file, tmp_path, "method=freeze", "freeze_layers=5"))


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_base_is_bitsandbytes_quantized(tiny_model_dir, alpaca_file, tmp_path, bits):
    import bitsandbytes as bnb

    from tunesmith.model.loader import load_model, quantization_config

    cfg = config(tiny_model_dir, alpaca_file, tmp_path / f"q{bits}", "method=qlora", f"quantization_bit={bits}")
    base = load_model(str(tiny_model_dir), torch.float32, torch.device("cpu"), quantization_config(bits))
    layer = (bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt)
    assert all(isinstance(m, layer)
               for m in (base.model.layers[0].self_attn.q_proj, base.model.layers[1].mlp.down_proj))
    model = attach_adapter(base, cfg)
    assert count_parameters(model)[0] == expected_trainable("lora", None)
    result = train(cfg, show_progress=False)
    assert result.losses[-1] < result.losses[0]
    assert (tmp_path / f"q{bits}" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("bits", [4, 8])
def test_an_evaluation_leaves_qlora_gradients_as_they_were(tiny_model_dir, alpaca_file, tmp_path, bits):
    """bitsandbytes repacks 4-bit weights for a CPU inference kernel without a backward the first time a layer runs
    in eval mode without gradients (CPUs with AVX512-BF16); training evaluates, then must still get true gradients."""
    from tunesmith.model.loader import load_model, quantization_config

    cfg = config(tiny_model_dir, alpaca_file, tmp_path, "method=qlora", f"quantization_bit={bits}", "lora_dropout=0")
    ids = torch.randint(3, 1000, (1, 24), generator=torch.Generator().manual_seed(0))

    def gradients(evaluate_first: bool) -> dict:
        torch.manual_seed(0)
        base = load_model(str(tiny_model_dir), torch.float32, torch.device("cpu"), quantization_config(bits))
        model = attach_adapter(base, cfg)
        for name, p in model.named_parameters():
            if "lora_B" in name:  # (peft starts B at zero: then only B would get a gradient)
                torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(1))
        if evaluate_first:
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    fresh, after_eval = gradients(False), gradients(True)
    assert fresh.keys() == after_eval.keys() and fresh
    for name, g in fresh.items():
        torch.testing.assert_close(after_eval[name], g, msg=name)
