"""Settings of the captioners, apart from the code that runs them.

Parameter validation imports these at every Kedro start; keeping them free of aiohttp,
pandas and the backends keeps that start fast.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sail_pipeline.executors import ExecutorSettings


class ApiSettings(BaseModel):
    """Parameters of one API backend; a typo in a key fails at pipeline start, not mid-run."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1; POSTs go to /chat/completions")
    model: str = Field(min_length=1)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(16, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(30.0, ge=0)
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

    def caption_identity(self) -> dict[str, object]:
        """What changes a caption (not concurrency, timeouts or retries): shard folders key on it."""
        return {k: getattr(self, k) for k in ("base_url", "model", "max_tokens", "temperature",
                                              "detail")}


DEFAULT_CAPTION_PROMPT = "Describe the image in detail."
DEFAULT_RECAPTION_PROMPT = ('Describe the image in detail. Its web alt-text, which may be wrong '
                            'or incomplete, is: "{alt_text}"')
PromptKind = Literal["caption", "recaption"]


class RecaptionSettings(BaseModel):
    """Parameters of a recaptioning run; a wrong key or value fails before any captioning."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "api", "oracle", "vllm"]
    shard_size: int = Field(512, gt=0, description="ids per output shard (the resume unit)")
    batch_size: int = Field(32, gt=0, description="items per backend call")
    max_new_tokens: int = Field(64, gt=0)
    caption_prompt: str = Field(DEFAULT_CAPTION_PROMPT, min_length=1)
    recaption_prompt: str = Field(DEFAULT_RECAPTION_PROMPT, min_length=1)
    use_alt_text: bool = True
    length_group_window: int = Field(
        8, gt=0, description="batches whose items are sorted by prompt length together")
    # plain: backend calls in this process. ray: each backend batch is one call on a Ray
    # actor (`executor.concurrency` of them, each building its own backend from a
    # BackendFactory); shards are still written here, in order.
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

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


