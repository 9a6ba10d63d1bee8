"""The `tunesmith` command: one table of verbs, each a thin shell over a library function.

User mistakes (bad config, bad data, missing model) print one line and exit 2; there is no traceback to read.
The verbs live by what they work on: training.py (train, sweep, doctor), inference.py (chat, serve, score) and
results.py (eval, export, webui).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from tunesmith.cli import inference, results, training
from tunesmith.errors import TunesmithError

log = logging.getLogger("tunesmith")


def _setup_logging(verbose: bool) -> None:
    """tunesmith's own messages go to stderr as `tunesmith: ...`. Libraries' log records (bitsandbytes, transformers,
    peft, ...) and Python warnings are shown only with --verbose: a user reads one voice, and a one-line error stays
    one line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tunesmith: %(message)s"))
    log.handlers[:] = [handler]
    # With several processes the main one speaks; the others only warn.
    log.setLevel(logging.DEBUG if verbose else logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
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
    # Each library sets its own logger's level when it is first imported, after this runs: hence also the variables.
    for variable in ("TRANSFORMERS_VERBOSITY", "HF_HUB_VERBOSITY", "DATASETS_VERBOSITY"):
        os.environ.setdefault(variable, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars, hub downloads
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # "Generating train split" of a hub dataset
    for noisy in ("transformers", "peft", "datasets", "huggingface_hub", "accelerate", "bitsandbytes"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # torch's launcher reports worker failures itself, with its own handler; tunesmith prints the one line instead.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)


VERBS = {"train": training.train_parser, "chat": inference.chat_parser, "serve": inference.serve_parser,
         "score": inference.score_parser, "export": results.export_parser, "eval": results.eval_parser,
         "sweep": training.sweep_parser, "webui": results.webui_parser, "doctor": training.doctor_parser}


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
        if not _to_launcher(str(e)):
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a worker of tunesmith's launcher: one line to the launcher, not a traceback per process
        first = (str(e).strip().splitlines() or [""])[0][:300]
        if args.verbose or not _to_launcher(f"{type(e).__name__}: {first}"):
            raise
        return 1


def _to_launcher(message: str) -> bool:
    """In a worker that tunesmith's launcher started, the launcher prints the error once for all processes."""
    if "TUNESMITH_LAUNCHED" not in os.environ:
        return False
    from tunesmith.train.launch import report_worker_error

    return report_worker_error(message)
