"""The DeepSpeed side of a stage: its config, optimizer and schedule, the engine built from
them, and the full weights gathered from ZeRO-3's shards."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from sail_pipeline.modeling.freezing import module_group
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.schedule import warmup_cosine
from sail_pipeline.training.task import SupervisedLM, Task


def deepspeed_config(cfg: RunConfig, world_size: int, dtype: torch.dtype) -> dict[str, Any]:
    """The run's DeepSpeed config: the stage's file, with what this run config decides."""
    config = copy.deepcopy(cfg.deepspeed_config)
    config.update({
        "train_batch_size": cfg.train.micro_batch_size * cfg.train.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": cfg.train.micro_batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "gradient_clipping": cfg.train.grad_clip,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    })
    config.setdefault("zero_optimization", {"stage": 0})
    if config["zero_optimization"].get("offload_optimizer"):
        # Our AdamW (per-group learning rates) runs on the offloaded states as is.
        config.setdefault("zero_force_ds_cpu_optimizer", False)
    return config


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW with one group per (module group, decay or not), each at its own learning rate."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decays = param.ndim >= 2 and "embed" not in name
            groups.setdefault((module_group(name), decays), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": cfg.train.weight_decay if decays else 0.0,
         "lr": cfg.train.lr * cfg.train.lr_scale.get(group, 1.0), "name": f"{group}"}
        for (group, decays), params in sorted(groups.items())
    ]
    # fused: one kernel per step for all parameters instead of ~10 small ops per tensor
    # (CPU and CUDA, fp32 and bf16; benchmarks/profile_train_step.py).
    return torch.optim.AdamW(param_groups, lr=cfg.train.lr,
                             betas=(cfg.train.beta1, cfg.train.beta2), fused=True)


def start_engine(cfg: RunConfig, task: Task, total_steps: int, world: int, dtype: torch.dtype
                 ) -> tuple[Any, LambdaLR]:
    """The DeepSpeed engine over the task's model, and the learning-rate schedule it steps."""
    import deepspeed  # already imported by the entry point, whose import phase it is charged to

    optimizer = build_optimizer(cfg, task.model)
    scheduler = warmup_cosine(optimizer, total_steps, cfg.train.warmup_ratio,
                              cfg.train.min_lr_ratio)
    network = SupervisedLM(task.model) if task.is_token_task else task.model
    engine, _, _, _ = deepspeed.initialize(
        model=network, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world, dtype),
    )
    return engine, scheduler


def consolidated_state(engine: Any, cfg: RunConfig, wrapped: bool
                       ) -> dict[str, torch.Tensor] | None:
    """ZeRO-3 shards parameters across ranks; gather them (a collective) before saving."""
    if cfg.zero_stage != 3:
        return None
    state = engine._zero3_consolidated_16bit_state_dict()
    if state is None or not wrapped:
        return state
    return {k.removeprefix("net."): v for k, v in state.items()}
