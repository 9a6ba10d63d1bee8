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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="tunesmith: %(message)s",
                        stream=sys.stderr)
    if not verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for noisy in ("transformers", "peft", "datasets", "huggingface_hub", "accelerate"):
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


VERBS = {"train": _train_parser, "score": _score_parser}


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
