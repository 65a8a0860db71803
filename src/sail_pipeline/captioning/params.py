"""Parameters of the `captioning` pipeline (`parameters_captioning.yml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sail_pipeline.captioning.settings import DEFAULT_CAPTION_PROMPT, ApiSettings


class ReferenceCaptionParams(BaseModel):
    """The small reference set a strong captioner describes in detail (SAIL-Caption's step 1)."""

    model_config = ConfigDict(extra="forbid")

    # oracle: the embedded world's complete captions; api: any OpenAI-compatible endpoint.
    backend: Literal["oracle", "api"] = "oracle"
    size: int | None = Field(2000, gt=0, description="ids in the reference set; null: all kept")
    prompt: str = Field(DEFAULT_CAPTION_PROMPT, min_length=1)
    api: ApiSettings | None = None
    credentials: str = Field("openai", description="entry of conf/local/credentials.yml")
    shard_size: int = Field(512, gt=0)
    batch_size: int = Field(64, gt=0, description="items per backend call (api: > concurrency)")

    @model_validator(mode="after")
    def _api_settings_for_api(self) -> ReferenceCaptionParams:
        if self.backend == "api" and self.api is None:
            raise ValueError("backend `api` needs `api` settings (base_url, model, ...)")
        return self


class CaptioningParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: ReferenceCaptionParams = Field(default_factory=ReferenceCaptionParams)
