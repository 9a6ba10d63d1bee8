"""The `tunesmith` command: one table of verbs, each a thin shell over a library function.

User mistakes (bad config, bad data, missing model) print one line and exit 2; there is no traceback to read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings

from tunesmith.errors import TunesmithError

log = logging.getLogger("tunesmith")


def _setup_logging(verbose: bool) -> None:
    """tunesmith's own messages go to stderr as `tunesmith: ...`. Libraries' log records (bitsandbytes, transformers,
    peft, ...) and Python warnings are shown only with --verbose: a user reads one voice, and a one-line error stays
    one line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tunesmith: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    root = logging.getLogger()
    if verbose:
        library = logging.StreamHandler(sys.stderr)
        library.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        root.handlers[:] = [library]
        root.setLevel(logging.INFO)
        return
    root.handlers[:] = [logging.NullHandler()]  # not Python's last-resort stderr handler either
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars, hub downloads
    for noisy in ("transformers", "peft", "datasets", "huggingface_hub", "accelerate", "bitsandbytes"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def cmd_train(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.model.adapters import ADAPTER_METHODS
    from tunesmith.train.loop import train

    cfg = load_config(args.config, args.overrides)
    started = time.time()
    result = train(cfg)
    if result.eval_losses:
        first, last = result.eval_losses[0][1], result.eval_losses[-1][1]
        print(f"eval loss: {first:.4f} (step 0) -> {last:.4f} (step {result.steps})")
    print(f"trained {result.steps} steps in {time.time() - started:.0f} s "
          f"({result.samples_per_s:.2f} samples/s, {result.tokens_per_s:.0f} tokens/s)")
    if cfg.method in ADAPTER_METHODS:
        print(f"adapter: {result.output_dir}/adapter_model.safetensors")
    else:
        print(f"model:   {result.output_dir}/ (complete model, loads with from_pretrained)")
    print(f"plot:    {result.output_dir}/loss.png")
    print(f"logs:    {result.output_dir}/trainer_log.jsonl  (tensorboard --logdir {result.output_dir}/tensorboard)")
    return 0


def _train_parser(sub) -> None:
    from tunesmith.config import describe_keys

    p = sub.add_parser("train", help="fine-tune a model", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="tunesmith train [CONFIG.yaml] [key=value ...]",
                       epilog="config keys:\n" + describe_keys())
    p.add_argument("config", nargs="?", help="YAML config file (optional; key=value overrides apply on top)")
    p.add_argument("overrides", nargs="*", help="key=value settings")
    p.set_defaults(func=cmd_train)


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (deterministic)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)


def cmd_chat(args: argparse.Namespace) -> int:
    from tunesmith.infer.chat import ChatSession, run_chat
    from tunesmith.infer.engine import SamplingParams
    from tunesmith.infer.loading import load_for_inference

    params = SamplingParams(args.max_new_tokens, args.temperature, args.top_p, args.top_k, args.repetition_penalty,
                            args.stop, args.seed)
    session = ChatSession(load_for_inference(args.model, args.device), params, args.system)
    if args.prompt is not None:
        print(session.ask(args.prompt))
    else:
        run_chat(session)
    return 0


def _chat_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a run, checkpoint, export or base model")
    p.add_argument("model", nargs="?", default=None, help="run dir, checkpoint, export, hub id, .gguf; "
                   "empty = embedded SmolLM2")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--prompt", default=None, help="answer this once and print only the answer")
    p.add_argument("--device", default="auto")
    _sampling_args(p)
    p.set_defaults(func=cmd_chat)


def cmd_serve(args: argparse.Namespace) -> int:
    from tunesmith.serve.server import serve

    serve(args.models, args.name, args.host, args.port, args.api_key or os.environ.get("TUNESMITH_API_KEY"),
          args.max_batch, args.engine, args.device)
    return 0


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible API server (/v1/chat/completions, /v1/completions)")
    p.add_argument("models", nargs="*", help="run dirs, exports or base models (several adapters may share a base); "
                   "none = embedded SmolLM2")
    p.add_argument("--name", action="append", default=[], help="served model name, in the order of the models")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or TUNESMITH_API_KEY)")
    p.add_argument("--max-batch", type=int, default=16, help="most requests decoded together")
    p.add_argument("--engine", choices=("transformers", "vllm"), default="transformers")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_serve)


def cmd_score(args: argparse.Namespace) -> int:
    from tunesmith.infer.score import RewardModel

    model = RewardModel(args.run_dir)
    for response in args.response:
        print(f"{model.score(args.prompt, response, args.system):.4f}\t{response}")
    return 0


def _score_parser(sub) -> None:
    p = sub.add_parser("score", help="score responses with a trained reward model (stage=rm)")
    p.add_argument("run_dir", help="run directory of a stage=rm training")
    p.add_argument("--prompt", required=True)
    p.add_argument("--response", required=True, action="append", help="repeat to score several responses")
    p.add_argument("--system", default=None)
    p.set_defaults(func=cmd_score)


def cmd_export(args: argparse.Namespace) -> int:
    from tunesmith.export import export_run
    from tunesmith.export.merge import human

    result = export_run(args.run_dir, args.out, fmt=args.format, quant=args.quant, bits=args.bits,
                        max_shard_size=args.max_shard_size, push_to_hub=args.push_to_hub, public=args.public,
                        base=args.base)
    for path in result.files:
        print(f"{path}  ({human(path.stat().st_size)})")
    if result.gguf is not None:
        name = result.gguf.name.split(".")[0]
        print(f"run it:  cd {result.out} && ollama create {name} -f Modelfile && ollama run {name}")
        print(f"     or: llama-cli -m {result.gguf} -cnv")
    if result.url:
        print(f"pushed:  {result.url} ({'public' if args.public else 'private'})")
    return 0


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="merge a run into one model: safetensors, 4/8-bit, or GGUF + Ollama Modelfile",
                       description="tunesmith export RUN_DIR --out DIR [--format hf|gguf] [--quant ...] [--bits 4|8] "
                                   "[--max-shard-size 500MB] [--push-to-hub user/name [--public]]")
    p.add_argument("run_dir", help="output_dir of a finished `tunesmith train`")
    p.add_argument("--out", required=True, help="new folder for the export")
    p.add_argument("--format", choices=("hf", "gguf"), default=None,
                   help="hf: safetensors for transformers (default); gguf: llama.cpp/Ollama (default with --quant)")
    p.add_argument("--quant", choices=("f16", "bf16", "q8_0", "q4_0"), default=None,
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
    from tunesmith.evaluate.abtest import ab_options, format_ab
    from tunesmith.evaluate.runner import format_table, metric_rows, run_eval

    ab = ab_options(args.ab, args.judge, args.judge_model, args.ab_max, args.ab_file, args.ab_max_new_tokens)
    results = run_eval(args.model or ["base"], args.dataset, args.benchmark, args.out, args.max_samples,
                       args.few_shot, args.device, ab)
    if metric_rows(results):
        print(format_table(results))
    if "ab" in results:
        print(format_ab(results["ab"]))
    print(f"results: {args.out}/eval_results.json")
    print(f"report:  {args.out}/report.html")
    return 0


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="compare models: eval loss, benchmarks (multiple choice, exact answer), BLEU/ROUGE",
                       description="tunesmith eval --model A [--model B ...] [--dataset FILE] [--benchmark FILE ...] "
                                   "--out DIR [--max-samples N] [--few-shot K] "
                                   "[--ab PROMPTS_FILE --judge URL|MODEL|human [--judge-model NAME] [--ab-max N]]")
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
    p.add_argument("--ab-max", type=int, default=None, help="use at most the first N A/B prompts")
    p.add_argument("--ab-file", default=None, help="human judge: preferences file, resumed if it exists "
                   "(default OUT/ab_preferences.jsonl)")
    p.add_argument("--ab-max-new-tokens", type=int, default=None, help="longest A/B answer in tokens (default 256)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)


def cmd_sweep(args: argparse.Namespace) -> int:
    from tunesmith.evaluate.sweep import format_sweep_table, plan_sweep, run_sweep

    results = run_sweep(plan_sweep(args.config, args.overrides))
    print(format_sweep_table(results))
    if results["best"]:
        best = results["best"]
        print(f"best:    {best['name']} (final eval loss {best['final_eval_loss']:.4f}) in {best['dir']}")
        print(f"config:  {best['config']}  (tunesmith train {best['config']} max_steps=0 for the full run)")
    print(f"plot:    {results['plot']}")
    print(f"results: {results['output_dir']}/sweep_results.json")
    return 0


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="short runs over settings (learning rate first), ranked by eval loss",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="tunesmith sweep [CONFIG.yaml] key=v1,v2,... [key=v1,v2 ...] [key=value ...]",
                       epilog="example:\n  tunesmith sweep examples/quickstart.yaml learning_rate=1e-4,5e-4,1e-3 "
                              "max_steps=30 output_dir=runs/lr-sweep\n\nA value with commas is swept; several "
                              "swept keys make a grid. lora_target and freeze_modules\nare swept with ';' "
                              "(\"q_proj,v_proj;all-linear\"). Needs validation data (val_size or val_dataset).\n"
                              "Each run trains into OUTPUT_DIR/<key-value>; OUTPUT_DIR gets sweep_results.json, "
                              "sweep.png and best.yaml.")
    p.add_argument("config", nargs="?", help="YAML config file (optional; key=value overrides apply on top)")
    p.add_argument("overrides", nargs="*", help="key=v1,v2,... to sweep; key=value for every run")
    p.set_defaults(func=cmd_sweep)


def cmd_webui(args: argparse.Namespace) -> int:
    from tunesmith.webui.app import launch

    launch(args.host, args.port, args.output_root)
    return 0


def _webui_parser(sub) -> None:
    p = sub.add_parser("webui", help="web UI: train, evaluate, chat, export and browse runs (Korean / English)",
                       description="tunesmith webui [--host 127.0.0.1] [--port 7860] [--output-root runs]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--output-root", default="runs", help="folder for runs, evaluations and exports")
    p.set_defaults(func=cmd_webui)


VERBS = {"train": _train_parser, "chat": _chat_parser, "serve": _serve_parser, "score": _score_parser,
         "export": _export_parser, "eval": _eval_parser, "sweep": _sweep_parser,
         "webui": _webui_parser}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunesmith", description="Fine-tune and run LLMs on your own hardware.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and tracebacks")
    sub = parser.add_subparsers(dest="verb", required=True)
    for add in VERBS.values():
        add(sub)
    args = parser.parse_args(argv)
    if getattr(args, "config", None) and "=" in args.config:  # `tunesmith train key=value ...` without a file
        args.overrides.insert(0, args.config)
        args.config = None
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except TunesmithError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
