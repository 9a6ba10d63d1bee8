"""Score text with a trained reward model (a run of stage=rm): `tunesmith score RUN_DIR --prompt ... --response ...`.

The run directory holds the adapter (or full model) with its score head and a tokenizer carrying the training
template, so a prompt/response pair is rendered and scored exactly as the training pairs were.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.data.dataset import encode_conversation
from tunesmith.data.formats import Conversation
from tunesmith.data.packing import pack_rows
from tunesmith.data.templates import Template
from tunesmith.errors import ModelError
from tunesmith.run import RunDir, load_run
from tunesmith.stages.rm import reward_scores


class RewardModel:
    def __init__(self, run_dir: str | Path, device: str = "auto"):
        run = RunDir.open(run_dir)
        if run.path is None:
            raise ModelError(f"{run_dir}: run directory not found")
        if not run.is_reward:
            raise ModelError(f"{run_dir}: this run is not a reward model (train it with stage=rm)")
        loaded = load_run(run_dir, device)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.device = next(self.model.parameters()).device
        self.template = Template("run", self.tokenizer.chat_template, self.tokenizer.eos_token)

    @torch.no_grad()
    def score(self, prompt: str, response: str, system: str | None = None) -> float:
        conv = Conversation([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], system)
        example = encode_conversation(conv, self.template, self.tokenizer, cutoff_len=10**9)
        return reward_scores(self.model, pack_rows([example]).to(self.device)).item()
