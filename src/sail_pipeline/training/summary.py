"""What a finished stage reports and keeps: its evaluation after training, summary.json, the
final metrics of its log, and its Hugging Face weights in `hf/`."""

from __future__ import annotations

import json
import logging
import shutil
import time
from typing import Any

import torch

from sail_pipeline import run_telemetry
from sail_pipeline.process_stats import peak_rss_mb
from sail_pipeline.storage import replace_text, written_whole_or_not_at_all
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.deepspeed_engine import consolidated_state
from sail_pipeline.training.evaluation import evaluate_stage
from sail_pipeline.training.loop import LoopState
from sail_pipeline.training.resume import ResumePoint
from sail_pipeline.training.startup import Stage
from sail_pipeline.training.telemetry import PhaseClock, format_metrics
from sail_pipeline.training.tracking import MetricLogger

# The entry point's logger: a stage's log reads as one trainer's, whichever module speaks.
log = logging.getLogger("sail_pipeline.train")
SUMMARY_FILE = "summary.json"
HF_DIR = "hf"


def finish_stage(cfg: RunConfig, stage: Stage, resumed: ResumePoint, state: LoopState,
                 before: dict[str, float], logger: MetricLogger, clock: PhaseClock
                 ) -> dict[str, Any]:
    """Evaluate the trained model, gather its weights (every rank) and, on rank 0, save
    them, close the metric log and write the summary, which every rank returns."""
    run_totals = state.totals.metrics()
    after = evaluate_stage(cfg, stage)
    clock.mark("eval")
    summary = stage_summary(cfg, stage, resumed, state, run_totals, before, after)
    weights = consolidated_state(stage.engine, cfg, wrapped=stage.task.is_token_task)
    if stage.rank == 0:
        _publish(cfg, stage, summary, weights, after, logger, clock)
    return summary


def stage_summary(cfg: RunConfig, stage: Stage, resumed: ResumePoint, state: LoopState,
                  run_totals: dict[str, float], before: dict[str, float],
                  after: dict[str, float]) -> dict[str, Any]:
    """summary.json's content, less what rank 0 adds once the weights are saved."""
    task, freeze_report = stage.task, stage.freeze_report
    return {
        "stage": cfg.stage, "kind": cfg.kind, "steps": stage.total_steps, "token_budget": cfg.train.tokens,
        "epoch_budget": cfg.train.epochs,
        "epoch_tokens": stage.batches.tokens.epoch_tokens() if task.is_token_task else None,
        "final_train_loss": state.final_loss, "train_samples": len(task.train), "rejected": stage.rejected,
        "mask_mismatches": getattr(task.train, "mask_mismatches", 0),
        # Up to the checkpoint it resumed from, plus this process: the work the stage kept.
        "wall_seconds": resumed.seconds + time.perf_counter() - stage.started,
        "resumed_at_step": resumed.step or None,
        "mean_tokens_per_s": run_totals.get("tokens_per_s", 0.0),
        "padding_fraction": run_totals.get("padding_fraction"),
        "peak_memory_gib": run_totals["peak_memory_gib"],
        "trainable_params": freeze_report.trainable_params if freeze_report else None,
        "logged_train_losses": state.losses,
        **{f"{k}_before": v for k, v in before.items()},
        **{f"{k}_after": v for k, v in after.items()},
    }


def _publish(cfg: RunConfig, stage: Stage, summary: dict[str, Any],
             weights: dict[str, torch.Tensor] | None,
             after: dict[str, float], logger: MetricLogger, clock: PhaseClock) -> None:
    """Rank 0's end of the stage: `hf/`, the log's last line, summary.json, no checkpoints."""
    hf_dir = stage.out / HF_DIR
    with written_whole_or_not_at_all(hf_dir, partial=hf_dir):
        stage.task.save(stage.hf_model, hf_dir, weights)
    clock.mark("save")
    logger.log({f"{k}_after": v for k, v in after.items()}
               | {"mask_mismatches": float(summary["mask_mismatches"])}
               | {f"seconds_{k}": v for k, v in clock.report().items()}
               | {"seconds_to_first_step": clock.first_step or float("nan")},
               step=stage.total_steps)
    logger.close()
    clock.mark("tracking")
    # This process's phases (a resumed stage's killed process is not in them).
    summary["phases"] = clock.report()
    summary["seconds_to_first_step"] = clock.first_step
    # The trainer's own peak: a training node's memory is mostly here, not in Kedro's.
    summary["peak_rss_mb"] = peak_rss_mb()
    # What the stage computed in summary.json; its timings and memory beside it, where DVC
    # does not hash them (sail_pipeline.run_telemetry). The summary last: it marks the stage done.
    result, measured = run_telemetry.split(summary)
    replace_text(run_telemetry.telemetry_path(stage.out / SUMMARY_FILE),
                 json.dumps(measured, indent=2))
    replace_text(stage.out / SUMMARY_FILE, json.dumps(result, indent=2))
    # The stage is done and `hf/` is its product; stale optimizer states would make the
    # next run of this stage resume a finished one.
    shutil.rmtree(stage.checkpoints, ignore_errors=True)
    log.info("%s: done in %.0fs, %s", cfg.stage, summary["wall_seconds"], format_metrics(after))
