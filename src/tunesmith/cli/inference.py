"""`tunesmith chat`, `serve` and `score`."""

from __future__ import annotations

import argparse


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (deterministic)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)


def cmd_chat(args: argparse.Namespace) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.infer.chat import ChatSession, run_chat
    from tunesmith.infer.engine import SAMPLING_RANGES, SamplingParams
    from tunesmith.infer.loading import load_for_inference

    for name, (low, high) in SAMPLING_RANGES.items():
        value = getattr(args, name, None)
        if value is not None and not low <= value <= high:  # (NaN too) a negative temperature decodes garbage
            low, high, value = (int(v) if float(v).is_integer() else v for v in (low, high, value))
            raise ConfigError(f"chat: --{name.replace('_', '-')} must be from {low} to {high}, got {value}")
    params = SamplingParams(args.max_new_tokens, args.temperature, args.top_p, max(args.top_k, 0),
                            args.repetition_penalty, args.stop, args.seed)
    session = ChatSession(load_for_inference(args.model, args.device), params, args.system)
    if args.prompt is not None:
        print(session.ask(args.prompt))
    else:
        run_chat(session)
    return 0


def chat_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a run, checkpoint, export or base model")
    p.add_argument("model", nargs="?", default=None, help="run dir, checkpoint, export, hub id, .gguf; "
                   "empty = embedded SmolLM2")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--prompt", default=None, help="answer this once and print only the answer")
    p.add_argument("--device", default="auto")
    _sampling_args(p)
    p.set_defaults(func=cmd_chat)


def cmd_serve(args: argparse.Namespace) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.extras import require

    require("fastapi", "tunesmith serve")
    require("uvicorn", "tunesmith serve")
    from tunesmith.serve.app import Limits
    from tunesmith.serve.server import read_keys, serve

    for flag, value in (("--max-batch", args.max_batch), ("--max-queue", args.max_queue),
                        ("--request-timeout", args.request_timeout), ("--max-body-mb", args.max_body_mb),
                        ("--threads", 1 if args.threads is None else args.threads)):
        if not value > 0:
            raise ConfigError(f"serve: {flag} must be above 0")
    limits = Limits(max_batch=args.max_batch, max_queue=args.max_queue, request_timeout_s=args.request_timeout,
                    max_body_bytes=int(args.max_body_mb * (1 << 20)))
    serve(args.models, args.name, args.host, args.port, read_keys(args.api_key, args.api_key_file), args.max_batch,
          args.engine, args.device, args.insecure, limits, args.dtype, args.threads)
    return 0


def serve_parser(sub) -> None:
    from tunesmith.infer.engines import ENGINES, listed  # light: engines import their libraries when loading

    p = sub.add_parser("serve", help="OpenAI-compatible API server (/v1/chat/completions, /v1/completions)")
    p.add_argument("models", nargs="*", help="run dirs, exports, .gguf files or base models (several adapters may "
                   "share a base); none = embedded SmolLM2")
    p.add_argument("--name", action="append", default=[], help="served model name, in the order of the models")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only; any other "
                   "needs an API key or --insecure)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-file", default=None, metavar="PATH",
                   help="require 'Authorization: Bearer KEY' for one of the keys in PATH (one per line); or set "
                   "TUNESMITH_API_KEY")
    p.add_argument("--api-key", default=None, help=argparse.SUPPRESS)  # still works; visible in `ps`, so not shown
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    p.add_argument("--max-batch", type=int, default=16, help="most requests decoded together")
    p.add_argument("--max-queue", type=int, default=256, help="most requests waiting; more get 429 + Retry-After")
    p.add_argument("--request-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="cancel a request (504) that has not finished this long after it arrived")
    p.add_argument("--max-body-mb", type=float, default=2.0, help="largest request body accepted (413 above)")
    # vLLM is accepted (it refuses with one line) but stays out of the choices shown until it has run on a GPU.
    engines = ", ".join(f"{name}: {ENGINES[name].help}" for name in listed())
    p.add_argument("--engine", default="auto", metavar="{" + ",".join(["auto", *listed()]) + "}",
                   help=f"auto = llamacpp for .gguf files when it is installed, else transformers; {engines}")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="transformers engine on a CPU: auto = where the CPU has fast bf16 (avx512_bf16, AMX) and the "
                   "model is large enough to gain, int8 weights for a model read from an 8-bit or smaller GGUF, else "
                   "bf16; fp32 elsewhere")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for decoding (default: every core); fewer on a machine busy with other work")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_serve)


def cmd_score(args: argparse.Namespace) -> int:
    from tunesmith.infer.score import RewardModel

    model = RewardModel(args.run_dir)
    for response in args.response:
        print(f"{model.score(args.prompt, response, args.system):.4f}\t{response}")
    return 0


def score_parser(sub) -> None:
    p = sub.add_parser("score", help="score responses with a trained reward model (stage=rm)")
    p.add_argument("run_dir", help="run directory of a stage=rm training")
    p.add_argument("--prompt", required=True)
    p.add_argument("--response", required=True, action="append", help="repeat to score several responses")
    p.add_argument("--system", default=None)
    p.set_defaults(func=cmd_score)
