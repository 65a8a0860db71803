"""The run config a training node writes and the trainer reads (no Kedro on either side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

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
    # The budget: optimizer steps, or real (image + text) tokens as the SAIL-VL paper counts
    # them, converted to steps once the data is packed. Exactly one of the two.
    steps: int | None = Field(None, gt=0)
    tokens: int | None = Field(None, gt=0)
    # Rows per rank per micro batch: packed rows of up to max_seq_len tokens when `pack`,
    # single samples padded to the longest otherwise.
    micro_batch_size: int = Field(32, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_seq_len: int = Field(256, gt=8)
    pack: bool = True
    loss_norm: Literal["token", "sample", "square"] = "token"
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"
    eval_samples: int = Field(256, ge=0)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    seed: int = 0
    log_every: int = Field(10, gt=0)
    save_every: int = Field(0, ge=0)
    # A DeepSpeed config (conf/base/deepspeed/*.json); batch sizes, clipping and precision
    # are filled in from this run config, so the file only holds what differs (ZeRO, offload).
    deepspeed: dict[str, Any] = Field(default_factory=dict)
    threads: int = Field(0, ge=0)
    peak_tflops: float | None = Field(None, gt=0, description="for MFU when the GPU is unknown")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _weights_have_a_source(self) -> RunConfig:
        if self.kind == "vlm" and self.init_from is None and self.tokenizer_path is None:
            raise ValueError("a vlm run needs init_from (a checkpoint) or tokenizer_path")
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("give exactly one budget: steps or tokens")
        if self.tokens is not None and self.kind == "vision":
            raise ValueError("a vision run counts images, not tokens: give steps")
        stage = self.zero_stage
        if stage not in (0, 1, 2, 3):
            raise ValueError(f"deepspeed.zero_optimization.stage must be 0-3, got {stage}")
        return self

    @property
    def zero_stage(self) -> int:
        return int(self.deepspeed.get("zero_optimization", {}).get("stage", 0))

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


DEEPSPEED_CONFIG_DIR = Path("conf/base/deepspeed")


def load_deepspeed_config(name: str, search_dir: str | Path = DEEPSPEED_CONFIG_DIR,
                          ) -> dict[str, Any]:
    """A DeepSpeed config by name (`zero2` -> conf/base/deepspeed/zero2.json) or by path."""
    path = Path(name) if name.endswith(".json") else Path(search_dir) / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in Path(search_dir).glob("*.json"))
        raise FileNotFoundError(f"DeepSpeed config {name!r} not found at {path}; known: {known}")
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"DeepSpeed config {path} must hold a JSON object")
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"{path}: zero_optimization.stage must be 0-3, got {stage!r}")
    return config
