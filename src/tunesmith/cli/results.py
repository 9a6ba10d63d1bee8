"""`tunesmith eval`, `export` and `webui`."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_export(args: argparse.Namespace) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.export import export_run
    from tunesmith.export.merge import human
    from tunesmith.llamafactory import export_settings

    # A LLaMA-Factory merge YAML brings export_dir, export_size, ...; what the command line says wins.
    given = {key: getattr(args, key) for key in ("out", "max_shard_size", "bits", "push_to_hub")}
    options = export_settings(Path(args.run_dir)) | {k: v for k, v in given.items() if v is not None}
    if not options.get("out"):
        raise ConfigError("export: --out DIR is required (the new folder for the export)")
    result = export_run(args.run_dir, options["out"], fmt=args.format, quant=args.quant, bits=options.get("bits"),
                        max_shard_size=options.get("max_shard_size"), push_to_hub=options.get("push_to_hub"),
                        public=args.public, base=args.base)
    for path in result.files:
        print(f"{path}  ({human(path.stat().st_size)})")
    if result.gguf is not None:
        name = result.gguf.name.split(".")[0]
        print(f"run it:  cd {result.out} && ollama create {name} -f Modelfile && ollama run {name}")
        print(f"     or: llama-cli -m {result.gguf} -cnv")
    if result.url:
        print(f"pushed:  {result.url} ({'public' if args.public else 'private'})")
    return 0


def export_parser(sub) -> None:
    from tunesmith.export.formats import EXPORTERS, GGUF_QUANTS

    p = sub.add_parser("export", help="merge a run into one model: safetensors, 4/8-bit, or GGUF + Ollama Modelfile",
                       description="tunesmith export RUN_DIR --out DIR [--format hf|gguf] [--quant ...] [--bits 4|8] "
                                   "[--max-shard-size 500MB] [--push-to-hub user/name [--public]]")
    p.add_argument("run_dir", help="output_dir of a finished `tunesmith train` (or its config; or a LLaMA-Factory "
                                    "merge YAML, whose export_dir, export_size, ... apply)")
    p.add_argument("--out", default=None, help="new folder for the export")
    p.add_argument("--format", choices=list(EXPORTERS), default=None,
                   help="hf: safetensors for transformers (default); gguf: llama.cpp/Ollama (default with --quant)")
    p.add_argument("--quant", choices=GGUF_QUANTS, default=None,
                   help="GGUF weight type (default q8_0)")
    p.add_argument("--bits", type=int, choices=(4, 8), default=None,
                   help="hf only: bitsandbytes 4-bit (nf4) or 8-bit weights")
    p.add_argument("--max-shard-size", default=None,
                   help="hf only: largest safetensors file, e.g. 500MB, 2GB (default 5GB)")
    p.add_argument("--push-to-hub", metavar="USER/NAME", default=None,
                   help="upload the folder to this hub repo (private; token from HF_TOKEN or `hf auth login`)")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: make a new repository public")
    p.add_argument("--base", default=None,
                   help="adapter runs: the base model (folder or hub id) if the one in adapter_config.json moved")
    p.set_defaults(func=cmd_export)


def cmd_eval(args: argparse.Namespace) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.evaluate.abtest import ab_options, format_ab
    from tunesmith.evaluate.runner import run_eval
    from tunesmith.evaluate.table import format_table, metric_rows

    if args.max_samples is not None and args.max_samples < 1:  # items[:-2] would drop the last rows in silence
        raise ConfigError(f"eval: --max-samples must be 1 or more, got {args.max_samples}")
    if args.few_shot < 0:
        raise ConfigError(f"eval: --few-shot must be 0 or more, got {args.few_shot}")
    ab = ab_options(args.ab, args.judge, args.judge_model, args.ab_max, args.ab_file, args.ab_max_new_tokens,
                    args.judge_insecure)
    results = run_eval([*args.models, *args.model] or ["base"], args.dataset, args.benchmark, args.out,
                       args.max_samples, args.few_shot, args.device, ab)
    if metric_rows(results):
        print(format_table(results))
    if "ab" in results:
        print(format_ab(results["ab"]))
    print(f"results: {args.out}/eval_results.json")
    print(f"report:  {args.out}/report.html")
    return 0


def eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="compare models: eval loss, benchmarks (multiple choice, exact answer), BLEU/ROUGE",
                       description="tunesmith eval [MODEL ...] [--model A --model B ...] [--dataset FILE] "
                                   "[--benchmark FILE ...] --out DIR [--max-samples N] [--few-shot K] "
                                   "[--ab PROMPTS_FILE --judge URL|MODEL|human [--judge-model NAME] [--ab-max N]]")
    p.add_argument("models", nargs="*", metavar="MODEL", help="as --model, written first (as `chat RUN_DIR` takes it)")
    p.add_argument("--model", action="append", default=[], help="run dir, checkpoint, export, hub id, .gguf or "
                   "'base' (embedded SmolLM2); repeat to compare models side by side")
    p.add_argument("--dataset", default=None, help="data in any training format: eval loss and perplexity")
    p.add_argument("--benchmark", action="append", default=[], help="jsonl of {question, choices, answer} "
                   "(multiple choice) or {question, answer} (exact answer); repeatable")
    p.add_argument("--out", required=True, help="folder for eval_results.json and report.html")
    p.add_argument("--max-samples", type=int, default=None, help="score at most N rows of each file")
    p.add_argument("--few-shot", type=int, default=0, help="multiple choice: the first K rows become examples "
                   "in the prompt (not scored)")
    p.add_argument("--ab", metavar="PROMPTS_FILE", default=None, help="blind A/B of the two --model: both answer "
                   "these prompts (any training format, prompt-only rows, or a benchmark file); needs --judge")
    p.add_argument("--judge", default=None, help="who judges the A/B pairs: an OpenAI-compatible endpoint "
                   "(http://HOST:PORT/v1; key from TUNESMITH_JUDGE_KEY or OPENAI_API_KEY), a local model (run dir, "
                   "hub id, 'base', ...), or 'human' (you, in the terminal)")
    p.add_argument("--judge-model", default=None, help="the endpoint's model name (default: the only one it serves)")
    p.add_argument("--judge-insecure", action="store_true", help="allow a plain http:// judge on another machine "
                   "(its key and the prompts travel unencrypted); without it, only https:// or this machine")
    p.add_argument("--ab-max", type=int, default=None, help="use at most the first N A/B prompts")
    p.add_argument("--ab-file", default=None, help="human judge: preferences file, resumed if it exists "
                   "(default OUT/ab_preferences.jsonl)")
    p.add_argument("--ab-max-new-tokens", type=int, default=None, help="longest A/B answer in tokens (default 256)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)



def cmd_webui(args: argparse.Namespace) -> int:
    from tunesmith.extras import require

    require("gradio", "tunesmith webui")
    from tunesmith.webui.app import launch

    launch(args.host, args.port, args.workspace, args.auth_file)
    return 0


def webui_parser(sub) -> None:
    p = sub.add_parser("webui", help="web UI: train, evaluate, chat, export and browse runs (Korean / English)",
                       description="tunesmith webui [--host 127.0.0.1] [--port 7860] [--workspace runs] "
                                   "[--auth-file PATH]",
                       epilog="Bound to anything but loopback, the page asks for a login: the user:password in "
                              "TUNESMITH_WEBUI_AUTH, --auth-file or TUNESMITH_WEBUI_AUTH_FILE, or else a password "
                              "generated and printed at start.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only; 0.0.0.0 = "
                   "other machines too, with a login)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--workspace", "--output-root", dest="workspace", default="runs",
                   help="the one folder the page reads and writes: runs, evaluations, exports, configs, uploads "
                        "(--output-root is the older name)")
    p.add_argument("--auth-file", default=None, help="file holding one line user:password for the login")
    p.set_defaults(func=cmd_webui)
