"""A stage's micro batches by global index, token (packed or padded) or image alike, and
their move to the training device."""

from __future__ import annotations

import torch

from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.data import StepBatches
from sail_pipeline.training.packing import BatchStats, TokenBatches
from sail_pipeline.training.task import Task


class StageBatches:
    """One interface over token batches (packed or padded) and image batches."""

    def __init__(self, cfg: RunConfig, task: Task, world: int) -> None:
        self.task, self.cfg = task, cfg
        if task.is_token_task:
            self.tokens = TokenBatches(task.train.samples, cfg.train.micro_batch_size, world,
                                       cfg.runtime.seed, cfg.train.pack, cfg.train.max_seq_len, cfg.train.loss_norm)
        else:
            self.images = StepBatches(len(task.train), cfg.train.micro_batch_size * world, cfg.runtime.seed)

    def steps(self) -> int:
        """Optimizer steps of the stage's budget (`steps`, `epochs` or `tokens`)."""
        train = self.cfg.train
        if train.steps is not None:
            return train.steps
        if train.epochs is not None:
            if not self.task.is_token_task:
                raise ValueError(f"{self.cfg.stage}: an `epochs` budget needs a token task; "
                                 f"give `steps`")
            return self.tokens.steps_for_epochs(train.epochs, train.grad_accum)
        return self.tokens.steps_for_tokens(train.tokens, train.grad_accum)

    def get(self, micro_batch: int, rank: int
            ) -> tuple[dict[str, torch.Tensor], BatchStats | None, int, int]:
        """(batch, token stats, samples, tiles) of micro batch k on this rank."""
        if self.task.is_token_task:
            pixels = getattr(self.task.train, "pixels", None)
            batch, stats = self.tokens.batch(micro_batch, rank, self.task.pad_id, pixels)
            tiles = int(batch["pixel_values"].shape[0]) if "pixel_values" in batch else 0
            return batch, stats, stats.samples, tiles
        size = self.cfg.train.micro_batch_size
        indices = self.images.indices(micro_batch)[rank * size:(rank + 1) * size]
        return self.task.train.batch(indices), None, len(indices), len(indices)


def to_device(batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
              ) -> dict[str, torch.Tensor]:
    """The batch on `device`, its images in the training precision (token ids stay integers)."""
    moved = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(dtype)
    return moved
