"""`evaluation`: which checkpoints, which tasks, how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sail_pipeline.schema.base import StrictModel
from sail_pipeline.schema.stages import RECIPE


class EvaluationSettings(StrictModel):
    """How one checkpoint is scored. The recipe's `evaluation` declares these once; each
    experiment's evaluation (`scaling.after_pretrain`, `scaling.after_sft`,
    `selection.evaluation`) starts from it and overrides what differs."""

    # null: every task; names checked against sail_pipeline.evaluation.tasks at the run's start.
    question_types: list[str] | None = None
    batch_size: int = Field(64, gt=0)
    max_new_tokens: int = Field(8, gt=0)
    limit: int | None = Field(None, gt=0)


class EvaluationParams(EvaluationSettings):
    """`evaluation`: the recipe's checkpoints, scored after the run."""

    # `world`: the embedded world's tasks; `real`: the SAIL-VL model card's benchmarks
    # through lmms-eval's bundled tasks (datasets must be in the local Hugging Face cache).
    suite: Literal["world", "real"] = "world"
    # Names checked against sail_pipeline.evaluation.real_suite when the run starts.
    real_benchmarks: list[str] | None = None
    checkpoints: list[str] = Field(default_factory=lambda: ["preference"])

    @field_validator("checkpoints")
    @classmethod
    def _recipe_stages(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in RECIPE]
        if unknown:
            raise ValueError(f"unknown checkpoints {unknown}; the recipe's stages: {list(RECIPE)}")
        return value
