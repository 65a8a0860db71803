"""`data`: the world, the tokenizer and the size of each stage's table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, model_validator

from sail_pipeline.schema.base import StrictModel
from sail_pipeline.schema.stages import PRETRAIN_STAGES
from sail_pipeline.schema.world import WorldParams


class TokenizerParams(StrictModel):
    """`train`: a BPE tokenizer on the world's text; `path`: yours (e.g. Qwen2.5's), local."""

    source: Literal["train", "path"] = "train"
    path: str | None = None
    vocab_size: int = Field(1024, ge=300)

    @model_validator(mode="after")
    def _path_given(self) -> TokenizerParams:
        if self.source == "path" and not self.path:
            raise ValueError("source 'path' needs `path` (a local tokenizer directory)")
        return self


# `data.stage_sizes`: a cap on rows per pretraining stage's table (null: all the world offers),
# one field per pretraining stage of the registry. The SFT stages' tables are mixtures with a
# size of their own (`sft.mixtures`).
StageSizeParams = create_model(
    "StageSizeParams", __base__=StrictModel, __module__=__name__,
    **{stage: (int | None, Field(None, gt=0)) for stage in PRETRAIN_STAGES})


class DataParams(StrictModel):
    world: WorldParams = Field(default_factory=WorldParams)
    tokenizer: TokenizerParams = Field(default_factory=TokenizerParams)
    stage_sizes: StageSizeParams = Field(default_factory=StageSizeParams)  # type: ignore[valid-type]
    advance_ocr: bool = True
