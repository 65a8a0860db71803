"""What every training node does: params -> run config -> DeepSpeed subprocess -> MLflow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow

from sail_pipeline.modeling.stages import get_stage
from sail_pipeline.params import RuntimeParams, TrainParams
from sail_pipeline.training.config import (
    OptimConfig,
    RunConfig,
    TrackingConfig,
    load_deepspeed_config,
)
from sail_pipeline.training.launcher import launch

log = logging.getLogger(__name__)
MODELS_DIR = Path("data/06_models")
# Summary keys worth a metric in the Kedro run (the nested run has the full curves).
_SUMMARY_METRICS = ("final_train_loss", "eval_loss_before", "eval_loss_after", "wall_seconds",
                    "train_samples", "mask_mismatches", "mean_tokens_per_s", "padding_fraction",
                    "steps", "peak_memory_gib")


def _tracking(run_name: str) -> TrackingConfig:
    active = mlflow.active_run()
    if active is None:
        return TrackingConfig()
    return TrackingConfig(tracking_uri=mlflow.get_tracking_uri(),
                          experiment_id=active.info.experiment_id,
                          parent_run_id=active.info.run_id, run_name=run_name)


def train(kind: str, stage: str, group: str, params: dict, runtime: dict, train_data: str,
          eval_data: str | None, **weights: Any) -> dict[str, Any]:
    """Train one stage in a DeepSpeed subprocess; returns the pointer the next stage loads."""
    settings = TrainParams.model_validate(params)
    run = RuntimeParams.model_validate(runtime)
    trainable = settings.trainable or (list(get_stage(stage).trainable) if kind == "vlm" else None)
    cfg = RunConfig(
        kind=kind, stage=stage, output_dir=str((MODELS_DIR / group / stage).resolve()),
        train_data=train_data, eval_data=eval_data,
        trainable=trainable or ["vision", "projector", "llm"],
        steps=settings.steps, tokens=settings.tokens, micro_batch_size=settings.micro_batch_size,
        grad_accum=settings.grad_accum, max_seq_len=settings.max_seq_len, pack=settings.pack,
        loss_norm=settings.loss_norm, gradient_checkpointing=settings.gradient_checkpointing,
        precision=settings.precision, attn_implementation=settings.attn_implementation,
        deepspeed=load_deepspeed_config(settings.deepspeed),
        eval_samples=settings.eval_samples,
        optim=OptimConfig(lr=settings.lr, weight_decay=settings.weight_decay,
                          warmup_ratio=settings.warmup_ratio, min_lr_ratio=settings.min_lr_ratio,
                          grad_clip=settings.grad_clip, lr_scale=settings.lr_scale),
        seed=run.seed, log_every=settings.log_every, save_every=settings.save_every,
        threads=run.threads, peak_tflops=run.peak_tflops,
        tracking=_tracking(stage), **{k: v for k, v in weights.items() if v is not None},
    )
    summary = launch(cfg, run.launcher)
    if summary.get("dry_run"):
        return summary
    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"{stage}/{k}": float(summary[k]) for k in _SUMMARY_METRICS
                            if isinstance(summary.get(k), int | float)})
    log.info("%s: loss %.4g -> %.4g (eval), %d samples, %.0fs", stage,
             summary.get("eval_loss_before", float("nan")),
             summary.get("eval_loss_after", float("nan")), summary["train_samples"],
             summary["wall_seconds"])
    return {"hf_dir": summary["hf_dir"], "run_dir": summary["run_dir"], "summary": summary}
