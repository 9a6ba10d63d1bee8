"""`tunesmith train CONFIG nproc=N [nnodes=M node_rank=R master_addr=HOST master_port=P]`: tunesmith starts the
processes itself through torch's launcher API (what torchrun runs), each one `python -m tunesmith train` with the
same arguments. torchrun and `accelerate launch` start the same workers; this is only a shorter way to write it.

Before any process starts, the config and every data row are checked here once, so a mistake is one line, not N.
A worker that fails writes its one-line error to the file the launcher gives it; the launcher stops the other
workers at once, and the error is printed once, naming the rank.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tunesmith.config import TrainConfig
from tunesmith.errors import TunesmithError

LAUNCHED = "TUNESMITH_LAUNCHED"  # set for the workers this launcher starts


class LaunchError(TunesmithError):
    pass


def wants_launch(cfg: TrainConfig) -> bool:
    """Several processes were asked for and none has been started yet (no launcher set WORLD_SIZE)."""
    return (cfg.nproc > 1 or cfg.nnodes > 1) and "WORLD_SIZE" not in os.environ


def launch(argv: list[str], cfg: TrainConfig) -> int:
    """Start `nproc` workers on this machine running `tunesmith train *argv`; return 0 or raise a one-line error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    preflight(cfg)
    config = LaunchConfig(min_nodes=cfg.nnodes, max_nodes=cfg.nnodes, nproc_per_node=cfg.nproc,
                          rdzv_backend="static", rdzv_endpoint=f"{cfg.master_addr}:{cfg.master_port}",
                          rdzv_configs={"rank": cfg.node_rank, "timeout": 900}, run_id="tunesmith", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn")
    os.environ[LAUNCHED] = "1"
    if "OMP_NUM_THREADS" not in os.environ:  # processes sharing a CPU: one thread per core each, or they thrash
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cfg.nproc))
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "tunesmith", "train", *argv)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        message = failure.message if isinstance(failure.message, str) else json.dumps(failure.message)
        if failure.exitcode < 0:
            message = (f"process {rank} was stopped by signal {-failure.exitcode}; the others were stopped too "
                       f"(resume=true continues from the last checkpoint)")
        raise LaunchError(message.removeprefix("error: ")) from None
    return 0


def preflight(cfg: TrainConfig) -> None:
    """What every worker would refuse, refused here once: output folder, resume, strategy, every data row."""
    from tunesmith.data.dataset import DataSpec, load_items
    from tunesmith.model.methods import get_method
    from tunesmith.stages import get_stage
    from tunesmith.train import checkpoint as ckpt
    from tunesmith.train.setup import check_distributed, check_fresh

    candidates = ckpt.find_resume_checkpoints(cfg.output_dir, cfg.resume)
    check_fresh(cfg, resuming=bool(candidates))
    if candidates:
        ckpt.check_same_training(cfg, candidates[0])
    stage = get_stage(cfg.stage, cfg)
    check_distributed(cfg, stage, get_method(cfg.method, cfg))
    load_items(DataSpec.from_settings(cfg), stage.checked)


def report_worker_error(message: str) -> bool:
    """In a worker this launcher started: hand the one-line error to the launcher (which prints it once) instead of
    printing it here. False when not such a worker."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not (os.environ.get(LAUNCHED) and path):
        return False
    rank = os.environ.get("RANK", "?")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"message": f"process {rank}: {message}", "timestamp": int(time.time())}, fh)
    return True
