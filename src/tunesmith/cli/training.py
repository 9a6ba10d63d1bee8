"""`tunesmith train`, `sweep` and `doctor`."""

from __future__ import annotations

import argparse
import os
import sys
import time


def cmd_train(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.model.methods import saves_adapter
    from tunesmith.train.launch import launch, wants_launch
    from tunesmith.train.loop import train

    cfg = load_config(args.config, args.overrides)
    if wants_launch(cfg):  # nproc/nnodes: start the workers, each this same command
        return launch([*([args.config] if args.config else []), *args.overrides], cfg)
    started = time.time()
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # the main process reports
    if result.eval_losses:
        first, last = result.eval_losses[0][1], result.eval_losses[-1][1]
        print(f"eval loss: {first:.4f} (step 0) -> {last:.4f} (step {result.steps})")
    print(f"trained {result.steps} steps in {time.time() - started:.0f} s "
          f"({result.samples_per_s:.2f} samples/s, {result.tokens_per_s:.0f} tokens/s)")
    if saves_adapter(cfg.method):
        print(f"adapter: {result.output_dir}/adapter_model.safetensors")
    else:
        print(f"model:   {result.output_dir}/ (complete model, loads with from_pretrained)")
    print(f"plot:    {result.output_dir}/loss.png")
    print(f"logs:    {result.output_dir}/trainer_log.jsonl  (tensorboard --logdir {result.output_dir}/tensorboard)")
    return 0


def train_parser(sub) -> None:
    from tunesmith.config import describe_keys

    p = sub.add_parser("train", help="fine-tune a model", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="tunesmith train [CONFIG.yaml] [key=value ...]",
                       epilog="config keys:\n" + describe_keys())
    p.add_argument("config", nargs="?", help="YAML config file, tunesmith's or a LLaMA-Factory training YAML "
                                             "(optional; key=value overrides apply on top)")
    p.add_argument("overrides", nargs="*", help="key=value settings")
    p.set_defaults(func=cmd_train)


def cmd_sweep(args: argparse.Namespace) -> int:
    from tunesmith.train.sweep import format_sweep_table, plan_sweep, run_sweep

    results = run_sweep(plan_sweep(args.config, args.overrides))
    print(format_sweep_table(results))
    if results["best"]:
        best = results["best"]
        print(f"best:    {best['name']} (final eval loss {best['final_eval_loss']:.4f}) in {best['dir']}")
        print(f"config:  {best['config']}  (tunesmith train {best['config']} max_steps=0 for the full run)")
    print(f"plot:    {results['plot']}")
    print(f"results: {results['output_dir']}/sweep_results.json")
    return 0


def sweep_parser(sub) -> None:
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



def cmd_doctor(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunesmith.config import load_config
    from tunesmith.doctor import doctor, to_html, to_text

    report = doctor(load_config(args.config, args.overrides), rows=args.rows)
    print(to_text(report, color=sys.stdout.isatty()), end="")
    if args.html:
        Path(args.html).write_text(to_html(report), encoding="utf-8")
        print(f"report:  {args.html}")
    return report.exit_code


def doctor_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check a training config before training: rows as the model sees them, "
                       "end-of-turn token, PAD/BOS, cutoff_len, duplicates, memory",
                       description="tunesmith doctor [CONFIG.yaml] [key=value ...] [--rows N] [--html FILE]",
                       epilog="Exit code 0: fine to train; 1: findings to fix first (each with its fix); 2: a bad "
                              "config or data file.")
    p.add_argument("config", nargs="?", help="YAML config file (optional; key=value overrides apply on top)")
    p.add_argument("overrides", nargs="*", help="key=value settings, as for `tunesmith train`")
    p.add_argument("--rows", type=int, default=3, help="how many rows of the dataset to show (default 3)")
    p.add_argument("--html", default=None, metavar="FILE", help="also write the report as an HTML page")
    p.set_defaults(func=cmd_doctor)
