"""One training run's settings: a recipe stage, a stand-in backbone or the captioner."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sail_pipeline.schema.base import StrictModel, neutral
from sail_pipeline.schema.stages import ALL_MODULES, ModuleKey


class TrainParams(StrictModel):
    """Every key of a stage's parameters (`pretrain.alignment`, `sft.knowledge`, ...).

    The trainer's run config holds this model as it is (`RunConfig.train`), so a field added
    here reaches the trainer with no other edit.
    """

    # The budget: optimizer steps, real (image + text) tokens as the SAIL-VL paper counts
    # them, or passes over the table (a scaling sweep's "N samples consumed once"); tokens
    # and epochs are converted to steps once the data is packed. Exactly one.
    steps: int | None = Field(None, gt=0)
    tokens: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    lr: float = Field(gt=0, le=1.0)
    # Rows per GPU per micro batch: packed rows of up to max_seq_len tokens when `pack`,
    # single samples padded to the longest otherwise.
    micro_batch_size: int = Field(64, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_seq_len: int = Field(256, gt=8)
    pack: bool = True
    loss_norm: Literal["token", "sample", "square"] = "token"
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"
    deepspeed: str = Field("zero0", description="conf/base/deepspeed/<name>.json, or a path")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.98, gt=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    # Per-module multipliers of `lr` ({"vision": 0.1}): a pretrained vision tower forgets
    # what it learned at the rate that suits a fresh projector.
    lr_scale: dict[ModuleKey, float] = Field(default_factory=dict)
    log_every: int = neutral(10, gt=0)
    save_every: int = neutral(0, ge=0, description="steps between resumable checkpoints; 0: none")
    eval_samples: int = Field(256, ge=0)
    # null: what the stage registry says trains (sail_pipeline.schema.stages)
    trainable: list[ModuleKey] | None = None

    @field_validator("lr_scale")
    @classmethod
    def _positive_scales(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v <= 0 for v in value.values()):
            raise ValueError("lr_scale values must be > 0")
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> TrainParams:
        given = [name for name in ("steps", "tokens", "epochs") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one budget, `steps`, `tokens` or `epochs` (got "
                             f"{given or 'none'}; an override of one sets the others to null, "
                             f"e.g. `tokens: null`)")
        return self


class BackboneParams(StrictModel):
    """`train`: make one here (the embedded default's stand-ins); `path`: a local directory."""

    source: Literal["train", "path"] = "train"
    path: str | None = None
    train: TrainParams | None = None

    @model_validator(mode="after")
    def _source_has_what_it_needs(self) -> BackboneParams:
        if self.source == "path" and not self.path:
            raise ValueError("source 'path' needs `path` (a local pretrained directory)")
        if self.source == "train" and self.train is None:
            raise ValueError("source 'train' needs `train` settings")
        return self


__all__ = ["ALL_MODULES", "BackboneParams", "TrainParams"]
