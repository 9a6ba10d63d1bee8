"""--format hf: safetensors shards for transformers (default), optionally bitsandbytes 4-/8-bit weights."""

from __future__ import annotations

from pathlib import Path

from tunesmith.export.formats.base import Exporter, ExportOptions, Written
from tunesmith.export.naming import ExportError

DEFAULT_SHARD = "5GB"


class HFExporter(Exporter):
    name = "hf"
    options = ("bits", "max_shard_size")

    def misplaced(self, option: str) -> str:
        return "--quant applies to --format gguf; for a quantized Hugging Face checkpoint use --bits 4|8"

    def check_options(self, options: ExportOptions) -> None:
        from tunesmith.export.merge import parse_size

        super().check_options(options)
        if options.bits not in (None, 4, 8):
            raise ExportError(f"--bits {options.bits}: choose 4 or 8")
        if options.max_shard_size:
            parse_size(options.max_shard_size)  # a typo fails now, not after the merge

    def check_run(self, run, options: ExportOptions) -> None:
        if options.bits == 4:  # a shape bitsandbytes cannot pack fails in seconds, not after the merge
            from tunesmith.model.loader import check_quantizable

            check_quantizable(run.base or run.weights, "score" if run.is_reward else "causal")

    def write(self, model, tokenizer, run, out: Path, options: ExportOptions, progress: bool) -> Written:
        from tunesmith.export.merge import check_complete, save_hf

        shard = options.max_shard_size or DEFAULT_SHARD
        if options.bits:
            from tunesmith.export.quantize import save_bnb

            save_bnb(model, tokenizer, out, options.bits, shard, run.is_reward)
        else:
            save_hf(model, tokenizer, out, shard)
        check_complete(out)
        return Written()

    def packaging(self, options: ExportOptions) -> str:
        return f"{options.bits}-bit bitsandbytes weights" if options.bits else "safetensors"

    def how_to_load(self, run, where: str, options: ExportOptions, written: Written) -> str:
        if run.is_reward:
            return ("```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                    f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n'
                    f'model = AutoModelForSequenceClassification.from_pretrained("{where}")\n'
                    'chat = [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]\n'
                    "inputs = tokenizer.apply_chat_template(chat, return_tensors=\"pt\", return_dict=True)\n"
                    "print(model(**inputs).logits[0, 0].item())  # higher = preferred\n```\n")
        note = f"  # {options.bits}-bit weights; needs bitsandbytes" if options.bits else ""
        return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n'
                f'model = AutoModelForCausalLM.from_pretrained("{where}"){note}\n'
                'inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}],\n'
                '                                       add_generation_prompt=True, return_tensors="pt", '
                'return_dict=True)\n'
                "answer = model.generate(**inputs, max_new_tokens=64)[0][inputs[\"input_ids\"].shape[1]:]\n"
                "print(tokenizer.decode(answer, skip_special_tokens=True))\n```\n")
