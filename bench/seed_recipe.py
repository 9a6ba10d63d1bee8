"""The seed recipe (../shared/bench/SEED_RECIPE.md) as users run it, for the GPU comparison in gpu_case.py:
transformers Trainer + PEFT LoRA r16/alpha 16 on q,k,v,o,gate,up,down, alpaca prompt + EOS with the loss on the
response only, padded micro-batch 2 x accumulation 8, gradient checkpointing (reentrant), adamw_8bit, lr 1e-4
constant, bf16; QLoRA = bitsandbytes nf4 with double quantization and bf16 compute. Prints one JSON line:
{"tokens_per_s": real (unpadded) tokens per second over the steps after the first, "peak_gib": max allocated}.

    python3 bench/seed_recipe.py MODEL_DIR ROWS.json [--method lora|qlora] [--steps 6] [--from-scratch]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def encode(rows: list[dict], tok) -> list[dict]:
    out = []
    for r in rows:
        prompt = tok(PROMPT.format(instruction=r["instruction"]), add_special_tokens=False)["input_ids"]
        answer = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + answer)[:2048]
        out.append({"input_ids": ids, "labels": ([-100] * len(prompt) + answer)[:2048]})
    return out


def main() -> None:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("rows")
    parser.add_argument("--method", choices=("lora", "qlora"), default="qlora")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--from-scratch", action="store_true", help="random weights from MODEL_DIR's config.json")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tok = AutoTokenizer.from_pretrained(args.model)
    tok.pad_token = tok.pad_token or tok.eos_token
    quant = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=dtype) if args.method == "qlora" else None)
    if args.from_scratch:  # random weights drawn on the device from the folder's config (gpu_case.py writes no
        from tunesmith.model.loader import random_model  # weights); making them is not what this recipe compares

        torch.manual_seed(42)
        model = random_model(args.model, dtype, torch.device("cuda" if cuda else "cpu"), quant)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, quantization_config=quant,
                                                     device_map={"": 0} if cuda else None)
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none",
                                             task_type="CAUSAL_LM", target_modules=["q_proj", "k_proj", "v_proj",
                                                                                   "o_proj", "gate_proj", "up_proj",
                                                                                   "down_proj"]))
    with open(args.rows) as f:
        data = encode(json.load(f), tok)
    padded = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    real_tokens: list[int] = []  # per micro-batch, padding excluded

    def collate(features):
        batch = padded(features)
        real_tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Timer(TrainerCallback):
        times: list[float] = []

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    timer = Timer()
    targs = TrainingArguments(output_dir="/tmp/seed_recipe_out", per_device_train_batch_size=2,
                              gradient_accumulation_steps=8, max_steps=args.steps, learning_rate=1e-4,
                              lr_scheduler_type="constant", optim="adamw_8bit" if cuda else "adamw_torch",
                              weight_decay=0.01, bf16=cuda, gradient_checkpointing=True,
                              gradient_checkpointing_kwargs={"use_reentrant": True}, logging_steps=1,
                              save_strategy="no", report_to=[], seed=42, dataloader_drop_last=True,
                              remove_unused_columns=False)
    trainer = Trainer(model=model, args=targs, train_dataset=data, callbacks=[timer], data_collator=collate)
    start = time.perf_counter()
    trainer.train()
    stamps = [start, *timer.times]
    counted = sum(real_tokens[8:8 * args.steps])  # 8 micro-batches per step; steps 2..N
    print(json.dumps({"tokens_per_s": counted / (stamps[-1] - stamps[1]),
                      "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}))


if __name__ == "__main__":
    main()
