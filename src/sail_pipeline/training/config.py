"""The run config a training node writes and the trainer reads (no Kedro on either side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sail_pipeline.schema import RuntimeParams, TrainParams, neutral, result_settings
from sail_pipeline.schema.stages import ALL_MODULES, ModuleKey


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    run_name: str | None = None
    # git.commit / git.dirty and what the run is (stage, preset, seed), set on the run
    tags: dict[str, str] = Field(default_factory=dict)


class RunConfig(BaseModel):
    """Everything one training process needs; written as JSON next to its outputs.

    The stage's settings travel as the user wrote them (`train`, `runtime`): nothing here
    redeclares a field of `TrainParams` or `RuntimeParams`.
    """

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
    # What trains: `train.trainable`, else the stage registry's default (resolved by the node).
    trainable_modules: list[ModuleKey] = Field(default_factory=lambda: list(ALL_MODULES))
    train: TrainParams
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    # The DeepSpeed config that `train.deepspeed` names, loaded (conf/base/deepspeed/*.json); batch
    # sizes, clipping and precision are filled in from `train`, so the file only holds what
    # differs (ZeRO, offload).
    deepspeed_config: dict[str, Any] = Field(default_factory=dict)
    tracking: TrackingConfig = neutral(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _weights_have_a_source(self) -> RunConfig:
        if self.kind == "vlm" and self.init_from is None and self.tokenizer_path is None:
            raise ValueError("a vlm run needs init_from (a checkpoint) or tokenizer_path")
        if (self.train.tokens is not None or self.train.epochs is not None) \
                and self.kind == "vision":
            raise ValueError("a vision run counts images, not tokens: give steps")
        stage = self.zero_stage
        if stage not in (0, 1, 2, 3):
            raise ValueError(f"deepspeed.zero_optimization.stage must be 0-3, got {stage}")
        return self

    @property
    def zero_stage(self) -> int:
        return int(self.deepspeed_config.get("zero_optimization", {}).get("stage", 0))

    def check_paths(self) -> None:
        """Fail before any process starts when an input the run names is missing."""
        for key in ("train_data", "eval_data", "init_from", "tokenizer_path", "llm_path",
                    "vision_path"):
            value = getattr(self, key)
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"{self.stage}: {key} {value} does not exist")

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must match: every setting that decides the result."""
        return json.loads(json.dumps(result_settings(self)))

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
