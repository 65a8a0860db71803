"""`captioning`: the reference captions, the SAIL-Captioner, and recaptioning the pool.

Each default is declared here once; `parameters_captioning.yml` sets only what the embedded
default changes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sail_pipeline.schema.base import StrictModel, neutral
from sail_pipeline.schema.executor import ExecutorParams
from sail_pipeline.schema.training import BackboneParams

# The detailed-caption prompt: reference captions, the captioner's training rows, recaptions,
# the `world_caption` task and Pretrain-Alignment's first prompt all ask it.
CAPTION_PROMPT = "Describe the image in detail."
RECAPTION_PROMPT = (CAPTION_PROMPT + ' Its web alt-text, which may be wrong or incomplete, '
                    'is: "{alt_text}"')
PromptKind = Literal["caption", "recaption"]


class ApiParams(StrictModel):
    """One OpenAI-compatible endpoint; a typo in a key fails at pipeline start, not mid-run."""

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1; POSTs go to /chat/completions")
    model: str = Field(min_length=1)
    api_key_env: str = neutral("OPENAI_API_KEY")
    concurrency: int = neutral(16, gt=0)
    timeout_s: float = neutral(60.0, gt=0)
    max_retries: int = neutral(5, ge=0)
    backoff_s: float = neutral(1.0, ge=0)
    max_backoff_s: float = neutral(30.0, ge=0)
    max_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.0, ge=0)
    detail: Literal["auto", "low", "high"] = "auto"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # A bad URL would otherwise fail every request and quarantine the whole pool.
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"


class CaptionStorageParams(StrictModel):
    """How captions are requested and stored; never what they say."""

    shard_size: int = neutral(1024, gt=0, description="ids per output shard (the resume unit)")
    batch_size: int = neutral(64, gt=0, description="items per backend call "
                              "(api: more than its concurrency)")


class RecaptionParams(CaptionStorageParams):
    """A recaptioning run (`sail_pipeline.captioning.recaption`); also the pool's base."""

    backend: Literal["local", "api", "oracle", "vllm"]
    max_new_tokens: int = Field(48, gt=0)
    caption_prompt: str = Field(CAPTION_PROMPT, min_length=1)
    recaption_prompt: str = Field(RECAPTION_PROMPT, min_length=1)
    use_alt_text: bool = Field(True, description="the recaption prompt for ids with alt-text, "
                               "else the caption prompt")
    # Web alt-texts are short (CLIP reads 77 tokens); a longer one is cut at a word boundary
    # and counted (recaption/noted/alt_text_truncated). At 3 tokens a character (non-Latin
    # text under a small BPE) 300 characters still fit the stand-in's 1024-token context.
    max_alt_text_chars: int = Field(300, gt=0, description="alt-text characters put in the "
                                    "recaption prompt; longer ones are truncated and counted")
    length_group_window: int = neutral(
        8, gt=0, description="batches whose items are sorted by prompt length together")
    # plain: backend calls in this process. ray: each backend batch is one call on a Ray
    # actor (`executor.concurrency` of them, each building its own backend from a
    # BackendFactory); shards are still written here, in order.
    executor: ExecutorParams = neutral(default_factory=ExecutorParams)

    @field_validator("recaption_prompt")
    @classmethod
    def _formats_with_alt_text(cls, value: str) -> str:
        # Checked here so a typo'd placeholder fails at start, not on the first item.
        if "{alt_text}" not in value:
            raise ValueError("recaption_prompt must contain {alt_text}")
        try:
            value.format(alt_text="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"recaption_prompt must have no placeholder but {{alt_text}} "
                             f"(double other braces): {error!r}") from error
        return value


class _ApiBackendChoice(StrictModel):
    """`api` settings, required exactly when `backend` is `api`."""

    backend: str
    api: ApiParams | None = None

    @model_validator(mode="after")
    def _api_settings_for_api(self) -> _ApiBackendChoice:
        if self.backend == "api" and self.api is None:
            raise ValueError("backend `api` needs `api` settings (base_url, model, ...)")
        return self


class ReferenceCaptionParams(_ApiBackendChoice, CaptionStorageParams):
    """The small reference set a strong captioner describes in detail (SAIL-Caption's step 1)."""

    # oracle: the embedded world's complete captions; api: any OpenAI-compatible endpoint.
    backend: Literal["oracle", "api"] = "oracle"
    size: int | None = Field(2000, gt=0, description="ids in the reference set; null: all kept")
    caption_prompt: str = Field(CAPTION_PROMPT, min_length=1)
    credentials: str = neutral("openai", description="entry of conf/local/credentials.yml")

    def recaption_params(self) -> RecaptionParams:
        """The same request as a recaptioning run: the caption prompt for every id."""
        return RecaptionParams(backend=self.backend, caption_prompt=self.caption_prompt,
                               use_alt_text=False, shard_size=self.shard_size,
                               batch_size=self.batch_size)


class CaptionerParams(BackboneParams):
    """The SAIL-Captioner: our VLM fine-tuned on the reference captions (`train`), or a
    captioner directory used as it is (`path`)."""

    # source train: the VLM it starts from. null: a new one from the stand-in backbones
    # (pretrain.preset, like Pretrain-Alignment), so the captioner owes nothing to the
    # recipe stages whose data it writes; or a local HF directory of a pretrained VLM.
    init_from: str | None = None
    eval_fraction: float = Field(0.05, gt=0, lt=1, description="reference images held out "
                                 "for the eval loss (both prompts of an image in one split)")


class PoolRecaptionParams(RecaptionParams, _ApiBackendChoice):
    """Recaptioning the whole kept pool with the captioner (SAIL-Caption's last step).

    `local`: batched generation in the Kedro process; `vllm`: vLLM's engine on a GPU;
    `api`: the captioner served by vLLM / LMDeploy / SGLang behind an OpenAI-compatible URL.
    The prompts also build the captioner's training rows, so it learns what it is asked.
    """

    backend: Literal["local", "api", "oracle", "vllm"] = "local"
    device: str = neutral("auto", description="local backend: auto (cuda if present), cpu, cuda")
    credentials: str = neutral("captioner", description="entry of conf/local/credentials.yml")


class CaptioningParams(StrictModel):
    reference: ReferenceCaptionParams = Field(default_factory=ReferenceCaptionParams)
    captioner: CaptionerParams | None = None  # needed by the captioner and recaption nodes
    recaption: PoolRecaptionParams = Field(default_factory=PoolRecaptionParams)
