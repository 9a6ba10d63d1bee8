"""Export a run: merge it into one model and package it for others (`tunesmith export RUN_DIR --out DIR`).

run        reads a run directory (config, adapter, base, log)
merge      LoRA/DoRA merged into the base in its dtype; size-limited safetensors shards; generation config
quantize   bitsandbytes 4/8-bit checkpoints
gguf_*     GGUF for llama.cpp/Ollama (llama, mistral, qwen2): tensors + tokenizer/chat-template metadata
modelfile  Ollama Modelfile with the training template translated to Go template syntax
card       the model card (README.md)
hub        private-by-default push
pipeline   the order of the above
"""

from tunesmith.export.naming import ExportError
from tunesmith.export.pipeline import ExportResult, export_run

__all__ = ["ExportError", "ExportResult", "export_run"]
