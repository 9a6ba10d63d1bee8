"""Load anything tunesmith makes or uses for generation: a run directory, a checkpoint, a merged export, a base model
(hub id, folder, .gguf) or the embedded default. The prompt template is the one the model was trained with: a run
saves it into its tokenizer, so `get_template("auto", tokenizer)` returns exactly the training template.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.data.dataset import wants_bos
from tunesmith.data.templates import Template, get_template
from tunesmith.errors import ModelError
from tunesmith.infer.engine import Engine
from tunesmith.kernel_caches import DECODING_ENTRIES, bound_kernel_caches
from tunesmith.model.loader import EMBEDDED_NAME, gguf_weights
from tunesmith.run import RunDir, load_run


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    template: Template
    engine: Engine
    context_length: int
    adapter: str | None = None  # the peft adapter to switch on when several adapters share one base

    def activate(self) -> None:
        if self.adapter is not None:
            self.model.set_adapter(self.adapter)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt ids for the next assistant turn, rendered and tokenized as in training."""
        text = self.template.render(self.tokenizer, messages, add_generation_prompt=True)
        return self.encode_text(text)

    def encode_text(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if wants_bos(self.tokenizer, self.template) and ids[:1] != [self.tokenizer.bos_token_id]:
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids


def load_for_inference(spec: str | None, device: str = "auto", name: str | None = None,
                       shared: dict | None = None, int8: bool = True) -> LoadedModel:
    """`shared` (base path -> peft model) lets several adapter runs on the same base share one copy of it. Without
    it, an adapter is merged into its base: decoding is then ~20% faster on a CPU, with the same greedy text.
    `int8=False` keeps the decoding dtype from depending on where the weights came from (a GGUF file may otherwise
    decode in int8): evaluation and A/B compare models decoded alike."""
    bound_kernel_caches(DECODING_ENTRIES)  # before the first matmul: every prompt length is a new prefill shape
    run = RunDir.open(spec)
    if run.is_reward and run.path is not None:
        raise ModelError(f"{spec}: this is a reward model; score text with `tunesmith score {spec}`")
    label = name or (run.name if run.path is not None or spec else EMBEDDED_NAME)
    loaded = load_run(spec, device, shared=shared, adapter_name=label)
    model, tokenizer = loaded.model, loaded.tokenizer
    template = get_template("auto", tokenizer)
    stop = tokenizer.convert_tokens_to_ids(template.stop)  # the unknown-token id when the vocabulary lacks it
    stops = {tokenizer.eos_token_id} | ({stop} if stop != tokenizer.unk_token_id else set())
    generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stops |= set(generation_eos if isinstance(generation_eos, list) else [generation_eos])
    stops.discard(None)  # (GPT-NeoX's EOS is also its unknown token: it must stay a stop)
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    # The GGUF's own quantization, for weights exactly as read from it (an adapter merged in adds float precision)
    source = gguf_weights(loaded.run.weights) if int8 and loaded.run.adapter is None else None
    return LoadedModel(label, model, tokenizer, template, Engine(model, tokenizer, stops, quantized_from=source),
                       context, loaded.adapter_name)
