"""The run config a training node writes and the trainer reads (no Kedro on either side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.98, gt=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    # Per-module multipliers of `lr` ({"vision": 0.1}): a pretrained vision tower forgets
    # what it learned at the rate that suits a fresh projector.
    lr_scale: dict[str, float] = Field(default_factory=dict)

    @field_validator("lr_scale")
    @classmethod
    def _known_groups(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - {"vision", "projector", "llm"})
        if unknown:
            raise ValueError(f"lr_scale keys must be vision/projector/llm, got {unknown}")
        if any(v <= 0 for v in value.values()):
            raise ValueError("lr_scale values must be > 0")
        return value


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    run_name: str | None = None


class RunConfig(BaseModel):
    """Everything one training process needs; written as JSON next to its outputs."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["vlm", "lm", "vision"]
    stage: str
    output_dir: str
    train_data: str
    eval_data: str | None = None
    # Where the weights start: a previous stage's Hugging Face directory, or a preset
    # plus optional pretrained backbones.
    init_from: str | None = None
    preset: str = "tiny"
    tokenizer_path: str | None = None
    llm_path: str | None = None
    vision_path: str | None = None
    trainable: list[str] = Field(default_factory=lambda: ["vision", "projector", "llm"])
    steps: int = Field(100, gt=0)
    micro_batch_size: int = Field(32, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_seq_len: int = Field(256, gt=8)
    eval_samples: int = Field(256, ge=0)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    seed: int = 0
    log_every: int = Field(10, gt=0)
    save_every: int = Field(0, ge=0)
    zero_stage: int = Field(0, ge=0, le=3)
    bf16: bool = False
    threads: int = Field(0, ge=0)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _weights_have_a_source(self) -> RunConfig:
        if self.kind == "vlm" and self.init_from is None and self.tokenizer_path is None:
            raise ValueError("a vlm run needs init_from (a checkpoint) or tokenizer_path")
        return self

    def check_paths(self) -> None:
        """Fail before any process starts when an input the run names is missing."""
        for key in ("train_data", "eval_data", "init_from", "tokenizer_path", "llm_path",
                    "vision_path"):
            value = getattr(self, key)
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"{self.stage}: {key} {value} does not exist")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.model_validate(json.loads(Path(path).read_text()))
