"""A model is asked once whether rows packed into one sequence stay apart; where they do not, rows train in
micro-batches of their own (one row, or a preference pair side by side), which gives each row what it gets alone."""

from __future__ import annotations

import logging

import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.packing import IGNORE, Example, pack_pairs, pack_step
from tunesmith.model.attention import use_varlen_attention
from tunesmith.model.row_isolation import packed_rows_stay_apart
from tunesmith.stages.base import causal_lm_loss
from tunesmith.stages.pairs import answer_logps


class Leaky(torch.nn.Module):
    """A model that ignores where packed rows start: what a new family with an unknown token mixer may do."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, **kwargs):
        kept = {k: v for k, v in kwargs.items() if k in ("use_cache", "output_hidden_states")}
        return self.inner(input_ids=input_ids, **kept)


def rows(n: int = 3) -> list[Example]:
    g = torch.Generator().manual_seed(3)
    out = []
    for length in (9, 14, 6)[:n]:
        ids = torch.randint(3, 200, (length,), generator=g).tolist()
        out.append(Example(ids, [IGNORE] * 2 + ids[2:]))
    return out


def test_attention_models_pack_and_the_others_are_found_out(tiny_model_dir, hybrid_model_dir, caplog):
    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    use_varlen_attention(llama)
    assert packed_rows_stay_apart(llama) and llama.training is False  # (from_pretrained leaves it in eval mode)
    llama.train()
    assert packed_rows_stay_apart(Leaky(llama)) is False
    assert llama.training  # the probe gives the mode back
    hybrid = AutoModelForCausalLM.from_pretrained(hybrid_model_dir, dtype=torch.float32)
    use_varlen_attention(hybrid)
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        assert packed_rows_stay_apart(hybrid) is False
    assert "Qwen3_5ForCausalLM cannot keep packed rows apart (`chunk_gated_delta_rule`" in caplog.text


def test_unpacked_batches_give_each_row_its_loss_alone(hybrid_model_dir):
    model = AutoModelForCausalLM.from_pretrained(hybrid_model_dir, dtype=torch.float32)
    use_varlen_attention(model)
    examples = rows()
    alone = [causal_lm_loss(model, pack_step([e], 10_000)[0]).loss_sum for e in examples]
    together = [causal_lm_loss(model, b).loss_sum for b in pack_step(examples, 10_000, packed=False)]
    torch.testing.assert_close(sorted(together), sorted(alone))
    [pair] = pack_pairs([(examples[0], examples[1])], 10_000, packed=False)
    side_by_side = answer_logps(model, pair)  # right padding after the shorter row changes nothing before it
    each = torch.cat([answer_logps(model, pack_step([e], 10_000)[0]) for e in examples[:2]])
    torch.testing.assert_close(side_by_side, each, rtol=1e-5, atol=1e-5)
