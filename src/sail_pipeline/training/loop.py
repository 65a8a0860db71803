"""The training loop: each step's micro batches through the engine, a metrics line every
`log_every` steps, a resumable checkpoint every `save_every`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sail_pipeline.training.batches import to_device
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.flops import peak_tflops, training_flops
from sail_pipeline.training.packing import BatchStats
from sail_pipeline.training.resume import ResumePoint, save_checkpoint
from sail_pipeline.training.startup import Stage
from sail_pipeline.training.task import Task
from sail_pipeline.training.telemetry import PhaseClock, ThroughputWindow, format_metrics
from sail_pipeline.training.tracking import MetricLogger


@dataclass
class LoopState:
    """What the loop carries from step to step, and what the summary reads after it."""

    window: ThroughputWindow  # since the last metrics line
    totals: ThroughputWindow  # the whole of this process's training
    progress: Any  # a tqdm bar
    losses: list[float] = field(default_factory=list)  # train_loss of each metrics line
    final_loss: float = float("nan")


def train_steps(cfg: RunConfig, stage: Stage, resumed: ResumePoint, before: dict[str, float],
                logger: MetricLogger, clock: PhaseClock) -> LoopState:
    """Train from the resumed step to the stage's last; `before` goes into each checkpoint."""
    state = _start_loop(cfg, stage, resumed.step)
    for step in range(resumed.step, stage.total_steps):
        _train_step(cfg, stage, step, state, clock)
        state.progress.update(1)
        _log_if_due(cfg, stage, step, state, logger)
        _checkpoint_if_due(cfg, stage, step, resumed, before, clock)
    state.progress.close()
    clock.mark("train")
    return state


def _start_loop(cfg: RunConfig, stage: Stage, start_step: int) -> LoopState:
    device = stage.device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    window = ThroughputWindow(stage.world, device, peak_tflops(device_name, cfg.runtime.peak_tflops),
                              flops_counter(cfg, stage.task, stage.trainable))
    totals = ThroughputWindow(stage.world, device)
    stage.engine.train()
    progress = _progress(stage.rank == 0, stage.total_steps, start_step, cfg.stage)
    return LoopState(window, totals, progress)


def _train_step(cfg: RunConfig, stage: Stage, step: int, state: LoopState,
                clock: PhaseClock) -> None:
    """One optimizer step: `grad_accum` micro batches, each measured into both windows."""
    engine = stage.engine
    for micro in range(cfg.train.grad_accum):
        t_wait = time.perf_counter()
        batch, stats, samples, tiles = stage.batches.get(step * cfg.train.grad_accum + micro,
                                                         stage.rank)
        batch = to_device(batch, stage.device, stage.dtype)
        wait = time.perf_counter() - t_wait
        loss = engine(**batch) if stage.task.is_token_task else engine(
            batch["pixel_values"], batch["labels"])[0]
        engine.backward(loss)
        engine.step()
        clock.first_step_done()
        width = int(batch["input_ids"].shape[1]) if "input_ids" in batch else 0
        for acc in (state.window, state.totals):
            acc.add(loss.item(), stats, samples, wait, width, tiles)


def _log_if_due(cfg: RunConfig, stage: Stage, step: int, state: LoopState,
                logger: MetricLogger) -> None:
    """Every `log_every` steps and after the last: the window's metrics and the learning rate."""
    if (step + 1) % cfg.train.log_every == 0 or step + 1 == stage.total_steps:
        metrics = state.window.metrics() | {"lr": stage.scheduler.get_last_lr()[0]}
        state.final_loss = metrics["train_loss"]
        state.losses.append(state.final_loss)
        if stage.rank == 0:
            logger.log(metrics, step=step + 1)
            state.progress.write(f"[{cfg.stage}] step {step + 1}/{stage.total_steps} "
                                 f"{format_metrics(metrics)}")


def _checkpoint_if_due(cfg: RunConfig, stage: Stage, step: int, resumed: ResumePoint,
                       before: dict[str, float], clock: PhaseClock) -> None:
    """Every `save_every` steps but the last (whose product is `hf/`): a resumable checkpoint."""
    if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step + 1 < stage.total_steps:
        clock.mark("train")
        save_checkpoint(stage.engine, stage.checkpoints, step + 1, stage.rank, before, resumed,
                        stage.started)
        clock.mark("checkpoint")


def flops_counter(cfg: RunConfig, task: Task, trainable: set[str]
                  ) -> Callable[[BatchStats, int, int], float] | None:
    """FLOPs of one micro batch from the model's shapes (None for the vision classifier)."""
    if not task.is_token_task:
        return None
    model_config = task.model.config
    groups = None if cfg.kind == "lm" else trainable & {"vision", "projector", "llm"}

    def count(stats: BatchStats, row_width: int, tiles: int) -> float:
        return training_flops(model_config, text_tokens=stats.real_tokens, seq_len=row_width,
                              images_tiles=tiles, trainable=groups)

    return count


def _progress(enabled: bool, total: int, initial: int, stage: str) -> Any:
    """A progress bar on a terminal; plain log lines (through `write`) in a pipe."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=stage, unit="step", file=sys.stdout,
                disable=not enabled or not sys.stdout.isatty(), dynamic_ncols=True)
