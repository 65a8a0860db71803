"""Parameters of the `captioning` pipeline (`parameters_captioning.yml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sail_pipeline.captioning.settings import (
    DEFAULT_CAPTION_PROMPT,
    ApiSettings,
    RecaptionSettings,
)
from sail_pipeline.training_params import BackboneParams


class _ApiBackendChoice(BaseModel):
    """`api` settings, required exactly when `backend` is `api`."""

    backend: str
    api: ApiSettings | None = None

    @model_validator(mode="after")
    def _api_settings_for_api(self) -> _ApiBackendChoice:
        if self.backend == "api" and self.api is None:
            raise ValueError("backend `api` needs `api` settings (base_url, model, ...)")
        return self


class ReferenceCaptionParams(_ApiBackendChoice):
    """The small reference set a strong captioner describes in detail (SAIL-Caption's step 1)."""

    model_config = ConfigDict(extra="forbid")

    # oracle: the embedded world's complete captions; api: any OpenAI-compatible endpoint.
    backend: Literal["oracle", "api"] = "oracle"
    size: int | None = Field(2000, gt=0, description="ids in the reference set; null: all kept")
    prompt: str = Field(DEFAULT_CAPTION_PROMPT, min_length=1)
    credentials: str = Field("openai", description="entry of conf/local/credentials.yml")
    shard_size: int = Field(512, gt=0)
    batch_size: int = Field(64, gt=0, description="items per backend call (api: > concurrency)")


class CaptionerParams(BackboneParams):
    """The SAIL-Captioner: our VLM fine-tuned on the reference captions (`train`), or a
    captioner directory used as it is (`path`)."""

    # source train: the VLM it starts from. null: a new one from the stand-in backbones
    # (pretrain.preset, like Pretrain-Alignment), so the captioner owes nothing to the
    # recipe stages whose data it writes; or a local HF directory of a pretrained VLM.
    init_from: str | None = None
    eval_fraction: float = Field(0.05, gt=0, lt=1, description="reference images held out "
                                 "for the eval loss (both prompts of an image in one split)")


class PoolRecaptionParams(RecaptionSettings, _ApiBackendChoice):
    """Recaptioning the whole kept pool with the captioner (SAIL-Caption's last step).

    `local`: batched generation in the Kedro process; `vllm`: vLLM's engine on a GPU;
    `api`: the captioner served by vLLM / LMDeploy / SGLang behind an OpenAI-compatible URL.
    The prompts also build the captioner's training rows, so it learns what it is asked.
    """

    backend: Literal["local", "api", "oracle", "vllm"] = "local"
    batch_size: int = Field(64, gt=0)
    max_new_tokens: int = Field(48, gt=0)
    shard_size: int = Field(1024, gt=0)
    device: str = Field("auto", description="local backend: auto (cuda if present), cpu, cuda")
    credentials: str = Field("captioner", description="entry of conf/local/credentials.yml")


class CaptioningParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: ReferenceCaptionParams = Field(default_factory=ReferenceCaptionParams)
    captioner: CaptionerParams | None = None  # needed by the captioner and recaption nodes
    recaption: PoolRecaptionParams = Field(default_factory=PoolRecaptionParams)
