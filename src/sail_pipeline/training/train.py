"""DeepSpeed training entry point: `deepspeed -m sail_pipeline.training.train --config run.json`.

Runs in DeepSpeed's processes, never in Kedro's. One code path for the three kinds of run:
`vlm` (the five recipe stages), `lm` (the stand-in LLM on the world's text) and `vision`
(the stand-in vision tower on attribute classification).

A stage runs in four parts, a module each: `startup` (process group, task, engine), `resume`
(the checkpoint it continues from), `loop` (the steps) and `summary` (evaluation, `hf/`,
summary.json). The names other code imports from here are re-exported below.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

from sail_pipeline.errors import TRACEBACK_VARIABLE, UserError
from sail_pipeline.process_stats import reset_peak_rss
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.deepspeed_engine import deepspeed_config
from sail_pipeline.training.evaluation import evaluate, metrics_before
from sail_pipeline.training.loop import train_steps
from sail_pipeline.training.resume import CheckpointsOfAnotherRun, resume_or_start
from sail_pipeline.training.startup import open_metric_logger, prepare_stage
from sail_pipeline.training.summary import HF_DIR, SUMMARY_FILE, finish_stage
from sail_pipeline.training.task import (
    SupervisedLM,
    Task,
    VisionClassifier,
    build_task,
    choose_attention,
    choose_precision,
)
from sail_pipeline.training.telemetry import PhaseClock

__all__ = ["HF_DIR", "SUMMARY_FILE", "USER_ERROR_EXIT", "USER_ERROR_MARK",
           "CheckpointsOfAnotherRun", "SupervisedLM", "Task", "VisionClassifier", "build_task",
           "choose_attention", "choose_precision", "deepspeed_config", "evaluate", "main", "run"]

# A stage that stops on something the user fixes (a full disk, a damaged checkpoint) prints
# one line starting with this mark and exits with this code; the launcher shows that line.
USER_ERROR_MARK = "[stage stopped] "
USER_ERROR_EXIT = 3


def run(cfg: RunConfig, clock: PhaseClock | None = None) -> dict[str, Any]:
    """Train one stage. `clock` (started when the process was) splits its wall time into
    phases, which the summary reports next to `seconds_to_first_step`."""
    clock = clock or PhaseClock(started=time.time())
    # A warm trainer forks each stage from a parent that may have held more: count this
    # stage's peak from its current size.
    reset_peak_rss()
    import deepspeed  # noqa: F401 - imported here so that its import is the "imports" phase
    import torch.distributed as dist

    clock.mark("imports")
    stage = prepare_stage(cfg, clock)
    resumed = resume_or_start(cfg, stage.engine, stage.checkpoints, stage.rank)
    clock.mark("engine")
    logger = open_metric_logger(cfg, stage, resumed.step)
    clock.mark("tracking")
    before = metrics_before(cfg, stage, resumed, logger)
    clock.mark("eval")
    state = train_steps(cfg, stage, resumed, before, logger, clock)
    summary = finish_stage(cfg, stage, resumed, state, before, logger, clock)
    dist.barrier()
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run the stage a run config describes; a stage stopped by a user error exits with
    USER_ERROR_EXIT after one USER_ERROR_MARK line."""
    clock = PhaseClock()
    clock.mark("imports")  # the interpreter and this module's imports
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="run config JSON written by a node")
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)),
                        help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `compilers` is DeepSpeed's probe for libaio, two gcc lines per stage.
    for noisy in ("DeepSpeed", "deepspeed", "torch.distributed", "compilers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run(RunConfig.load(args.config), clock)
    except BaseException as error:
        _end_tracking("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        if not isinstance(error, UserError) or os.environ.get(TRACEBACK_VARIABLE):
            raise
        print(f"{USER_ERROR_MARK}{type(error).__name__}: {error}", flush=True)
        return USER_ERROR_EXIT
    return 0


def _end_tracking(status: str) -> None:
    """Close the stage's MLflow run as what happened: MLflow's own exit hook would close it
    FINISHED."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run(status=status)


if __name__ == "__main__":
    sys.exit(main())

