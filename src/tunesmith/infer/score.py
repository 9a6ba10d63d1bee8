"""Score text with a trained reward model (a run of stage=rm): `tunesmith score RUN_DIR --prompt ... --response ...`.

The run directory holds the adapter (or full model) with its score head and a tokenizer carrying the training
template, so a prompt/response pair is rendered and scored exactly as the training pairs were.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tunesmith.data.dataset import encode_conversation
from tunesmith.data.formats import Conversation
from tunesmith.data.packing import pack_rows
from tunesmith.data.templates import Template
from tunesmith.errors import ModelError
from tunesmith.model.loader import load_model, load_tokenizer, pick_device, pick_dtype
from tunesmith.run import require_finished
from tunesmith.train.preference import reward_scores


class RewardModel:
    def __init__(self, run_dir: str | Path, device: str = "auto"):
        run = Path(run_dir)
        require_finished(run)
        adapter = run / "adapter_config.json"
        if not (adapter.exists() or (run / "config.json").exists()):
            raise ModelError(f"{run}: not a run directory (no adapter_config.json or config.json)")
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(str(run))
        self.template = Template("run", self.tokenizer.chat_template, self.tokenizer.eos_token)
        dtype = pick_dtype("auto", self.device)
        if adapter.exists():
            from peft import PeftModel

            settings = json.loads(adapter.read_text())
            if settings.get("task_type") != "SEQ_CLS":
                raise ModelError(f"{run}: this run is not a reward model (train it with stage=rm)")
            base = load_model(settings["base_model_name_or_path"], dtype, self.device, head="score")
            self.model = PeftModel.from_pretrained(base, run).to(self.device)
        else:
            self.model = load_model(str(run), dtype, self.device, head="score")
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()

    @torch.no_grad()
    def score(self, prompt: str, response: str, system: str | None = None) -> float:
        conv = Conversation([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], system)
        example = encode_conversation(conv, self.template, self.tokenizer, cutoff_len=10**9)
        return reward_scores(self.model, pack_rows([example]).to(self.device)).item()
