"""The `tunesmith eval` and `tunesmith export` command lines the Evaluate and Export tabs run."""

from __future__ import annotations

from tunesmith.export.formats import EXPORTERS, GGUF_QUANTS  # noqa: F401 - the Export tab lists these

# Export kinds offered in the Export tab -> CLI flags: the hf format as merged, 4-bit and 8-bit, then every other
# registered format by its name (gguf, and any added one).
MERGED, BITS4, BITS8, GGUF = "merged", "4bit", "8bit", "gguf"
EXPORT_KINDS = (MERGED, BITS4, BITS8, *(name for name in EXPORTERS if name != "hf"))


def eval_args(models: list[str], benchmarks: list[str], dataset: str | None, out: str, max_samples: int = 0,
              few_shot: int = 0) -> list[str]:
    args = ["eval"]
    for model in models:
        args += ["--model", model]
    for bench in benchmarks:
        args += ["--benchmark", bench]
    if dataset:
        args += ["--dataset", dataset]
    args += ["--out", out]
    if max_samples:
        args += ["--max-samples", str(int(max_samples))]
    if few_shot:
        args += ["--few-shot", str(int(few_shot))]
    return args


def export_args(run_dir: str, out: str, kind: str, quant: str = "q8_0", max_shard_size: str = "",
                push_to_hub: str = "", public: bool = False) -> list[str]:
    """The token never appears here: `tunesmith export` reads HF_TOKEN from the environment it inherits."""
    if kind not in EXPORT_KINDS:
        raise ValueError(f"export kind must be one of {', '.join(EXPORT_KINDS)}, got {kind!r}")
    args = ["export", run_dir, "--out", out]
    if kind == GGUF:
        args += ["--quant", quant]
    elif kind not in (MERGED, BITS4, BITS8):
        args += ["--format", kind]
    elif kind in (BITS4, BITS8):
        args += ["--bits", "4" if kind == BITS4 else "8"]
    if max_shard_size.strip() and kind != GGUF:
        args += ["--max-shard-size", max_shard_size.strip()]
    if push_to_hub.strip():
        args += ["--push-to-hub", push_to_hub.strip()]
        if public:
            args.append("--public")
    return args
