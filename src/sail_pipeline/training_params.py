"""Settings of training runs, in a module light enough for every schema to import."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainParams(BaseModel):
    """One training run: a recipe stage, a stand-in backbone or the captioner."""

    model_config = ConfigDict(extra="forbid")

    # The budget: optimizer steps, or real (image + text) tokens; exactly one.
    steps: int | None = Field(None, gt=0)
    tokens: int | None = Field(None, gt=0)
    lr: float = Field(gt=0, le=1.0)
    # Rows per GPU per micro batch: packed rows of up to max_seq_len tokens when `pack`.
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
    grad_clip: float = Field(1.0, gt=0)
    lr_scale: dict[Literal["vision", "projector", "llm"], float] = Field(default_factory=dict)
    log_every: int = Field(10, gt=0)
    save_every: int = Field(0, ge=0)
    eval_samples: int = Field(256, ge=0)
    trainable: list[Literal["vision", "projector", "llm"]] | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> TrainParams:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("give exactly one budget, `steps` or `tokens` (an override of one "
                             "sets the other to null, e.g. `tokens: null`)")
        return self


class BackboneParams(BaseModel):
    """`train`: make one here (the embedded default's stand-ins); `path`: a local directory."""

    model_config = ConfigDict(extra="forbid")

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
