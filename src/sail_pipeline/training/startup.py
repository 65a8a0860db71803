"""Everything a stage does before its first step: join the process group, seed, build the
task and its DeepSpeed engine, and open the stage's metric log."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from sail_pipeline.lineage import flatten
from sail_pipeline.modeling.freezing import FreezeReport, freeze, module_group
from sail_pipeline.training.batches import StageBatches
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.deepspeed_engine import start_engine
from sail_pipeline.training.rendezvous import init_process_group
from sail_pipeline.training.resume import seed_everything
from sail_pipeline.training.task import Task, build_task, choose_attention, choose_precision
from sail_pipeline.training.telemetry import PhaseClock
from sail_pipeline.training.tracking import MetricLogger

# The entry point's logger: a stage's log reads as one trainer's, whichever module speaks.
log = logging.getLogger("sail_pipeline.train")
CHECKPOINT_DIR = "checkpoints"


@dataclass
class Stage:
    """A stage ready to train: this process's place in the run, its task and its engine."""

    out: Path
    rank: int
    world: int
    dtype: torch.dtype
    started: float  # perf_counter when the stage's own work began (after the rendezvous)
    task: Task
    rejected: dict[str, int]
    freeze_report: FreezeReport | None
    batches: StageBatches
    total_steps: int
    trainable: set[str]  # module groups with a parameter that trains: what the FLOPs count
    engine: Any
    scheduler: LambdaLR

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def checkpoints(self) -> Path:
        return self.out / CHECKPOINT_DIR

    @property
    def hf_model(self) -> nn.Module:
        """The Hugging Face model inside the engine: what the stage saves."""
        return self.engine.module.net if self.task.is_token_task else self.engine.module


def prepare_stage(cfg: RunConfig, clock: PhaseClock) -> Stage:
    """Join the run, build the task and its engine; `clock` is charged phase by phase."""
    out, rank, world, dtype = _join_run(cfg)
    clock.mark("rendezvous")

    started = time.perf_counter()
    task, rejected, freeze_report = _load_task(cfg, clock, out, rank)
    batches = StageBatches(cfg, task, world)
    total_steps = batches.steps()
    trainable = {module_group(n) for n, p in task.model.named_parameters() if p.requires_grad}
    engine, scheduler = start_engine(cfg, task, total_steps, world, dtype)
    stage = Stage(out, rank, world, dtype, started, task, rejected, freeze_report, batches,
                  total_steps, trainable, engine, scheduler)
    if rank == 0:
        _log_plan(cfg, stage)
    return stage


def _join_run(cfg: RunConfig) -> tuple[Path, int, int, torch.dtype]:
    """(output folder, rank, world size, precision), with this rank's generators seeded."""
    import torch.distributed as dist

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    seed_everything(cfg.runtime.seed + rank)
    return out, rank, world, choose_precision(cfg.train.precision)


def _load_task(cfg: RunConfig, clock: PhaseClock, out: Path, rank: int
               ) -> tuple[Task, dict[str, int], FreezeReport | None]:
    """The task, the counts of rows it rejected, and what froze (None when all trains)."""
    task = build_task(cfg, clock)
    rejected = task.train.rejections.counts()
    if rank == 0:
        task.train.rejections.save(out / "rejected.parquet")
        log.info("%s: %d training samples kept, rejected %s", cfg.stage, len(task.train), rejected)
    freeze_report = freeze(task.model, task.freeze_keys) if task.freeze_keys else None
    if freeze_report and rank == 0:
        log.info("%s: %s", cfg.stage, freeze_report.summary())
    if cfg.train.gradient_checkpointing:
        if not hasattr(task.model, "activation_checkpointing_enable"):
            raise ValueError(f"{cfg.stage}: this model has no gradient checkpointing")
        task.model.activation_checkpointing_enable({"use_reentrant": False})
    return task, rejected, freeze_report


def _log_plan(cfg: RunConfig, stage: Stage) -> None:
    """One line: the budget, the rows, ZeRO, precision and attention the stage runs with."""
    plan = (f"{stage.total_steps} steps" + (f" for a budget of {cfg.train.tokens:,} tokens"
                                            if cfg.train.tokens else "")
            + (f" for {cfg.train.epochs:g} epochs" if cfg.train.epochs else ""))
    if stage.task.is_token_task:
        plan += (f", {'packed' if cfg.train.pack else 'padded'} rows of up to {cfg.train.max_seq_len} "
                 f"tokens, {stage.batches.tokens.rows_per_epoch} rows per epoch, "
                 f"{cfg.train.loss_norm} loss normalisation")
    log.info("%s: %s; ZeRO stage %d, %s, attention %s", cfg.stage, plan, cfg.zero_stage,
             str(stage.dtype).removeprefix("torch."), choose_attention(cfg.train.attn_implementation))


def open_metric_logger(cfg: RunConfig, stage: Stage, resumed_at: int) -> MetricLogger:
    """metrics.jsonl (and the MLflow run) of the stage, with every setting it ran with."""
    # Every setting the run was given (train.*, runtime.seed, ...), and what followed from them.
    task = stage.task
    params = {**flatten(cfg.model_dump(mode="json", include={"train", "runtime"})),
              "stage": cfg.stage, "kind": cfg.kind, "preset": cfg.preset, "steps": stage.total_steps,
              "world_size": stage.world, "trainable": ",".join(task.freeze_keys or ["all"]),
              "train_samples": len(task.train), "zero_stage": cfg.zero_stage,
              "resolved_precision": str(stage.dtype).removeprefix("torch."),
              "rows_per_epoch": stage.batches.tokens.rows_per_epoch if task.is_token_task else None}
    return MetricLogger(cfg.tracking, stage.out, params, enabled=stage.rank == 0,
                        resumed_at=resumed_at if resumed_at else None,
                        inputs={"training": cfg.train_data, "evaluation": cfg.eval_data})
