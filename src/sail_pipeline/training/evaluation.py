"""The held-out loss (and attribute accuracy) of a stage's model, before and after training."""

from __future__ import annotations

import logging

import torch
from torch import nn

from sail_pipeline.training.batches import to_device
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.resume import ResumePoint
from sail_pipeline.training.startup import Stage
from sail_pipeline.training.task import Task
from sail_pipeline.training.telemetry import format_metrics
from sail_pipeline.training.tracking import MetricLogger

# The entry point's logger: a stage's log reads as one trainer's, whichever module speaks.
log = logging.getLogger("sail_pipeline.train")


@torch.no_grad()
def evaluate(cfg: RunConfig, task: Task, model: nn.Module, device: torch.device,
             dtype: torch.dtype) -> dict[str, float]:
    """Mean loss per supervised token (and accuracy per attribute for the vision tower).

    Padded batches, per-token mean, whatever the training normalisation: numbers stay
    comparable across stages and runs.
    """
    if task.eval is None or len(task.eval) == 0:
        return {}
    was_training = model.training
    model.eval()
    total_loss, total_weight = 0.0, 0
    correct: dict[str, int] = {}
    size = cfg.train.micro_batch_size
    if cfg.train.pack and task.is_token_task:  # as many tokens as a packed micro batch holds
        longest = max(len(sample) for sample in task.eval.samples)
        size = max(1, cfg.train.micro_batch_size * cfg.train.max_seq_len // longest)
    for start in range(0, len(task.eval), size):
        idx = list(range(start, min(start + size, len(task.eval))))
        batch = to_device(task.eval.batch(idx, task.pad_id), device, dtype)
        if cfg.kind == "vision":
            loss, logits = model(batch["pixel_values"], batch["labels"])
            total_loss += float(loss) * len(idx)
            total_weight += len(idx)
            for i, name in enumerate(logits):
                hits = (logits[name].argmax(-1) == batch["labels"][:, i]).sum().item()
                correct[name] = correct.get(name, 0) + int(hits)
        else:
            losses, _, _ = model.token_losses(**batch)
            total_loss += float(losses.sum())
            total_weight += losses.numel()
    model.train(was_training)
    metrics = {"eval_loss": total_loss / max(total_weight, 1)}
    metrics.update({f"eval_acc_{n}": c / len(task.eval) for n, c in correct.items()})
    return metrics


def evaluate_stage(cfg: RunConfig, stage: Stage) -> dict[str, float]:
    """`evaluate` on the model the stage's engine trains."""
    return evaluate(cfg, stage.task, stage.engine.module, stage.device, stage.dtype)


def metrics_before(cfg: RunConfig, stage: Stage, resumed: ResumePoint,
                   logger: MetricLogger) -> dict[str, float]:
    """The evaluation before training: measured and logged at step 0, or, in a resumed
    stage, what the killed process measured (already in the log it kept)."""
    before = evaluate_stage(cfg, stage) if resumed.step == 0 else resumed.before
    if stage.rank == 0 and before and resumed.step == 0:
        logger.log({f"{k}_before": v for k, v in before.items()}, step=resumed.step)
        log.info("%s: before training %s", cfg.stage, format_metrics(before))
    return before
