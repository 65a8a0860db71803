"""Captioner backends: the recaptioning stage calls these from Kedro nodes or plain scripts."""

from sail_pipeline.captioning.api_client import (
    ApiCaptioner,
    ApiKey,
    ApiSettings,
    CaptionRequest,
    CaptionResult,
    caption_all,
    image_mime_type,
    resolve_api_key,
)
from sail_pipeline.captioning.backends import (
    ApiBackend,
    CaptionBackend,
    CaptionItem,
    CaptionOutcome,
    LocalBackend,
    OracleBackend,
    VllmBackend,
)
from sail_pipeline.captioning.recaption import (
    RecaptionSettings,
    RecaptionSummary,
    build_prompt,
    length_grouped,
    recaption,
)
from sail_pipeline.captioning.shards import read_captions, read_failures

__all__ = [
    "ApiBackend",
    "ApiCaptioner",
    "ApiKey",
    "ApiSettings",
    "CaptionBackend",
    "CaptionItem",
    "CaptionOutcome",
    "CaptionRequest",
    "CaptionResult",
    "LocalBackend",
    "OracleBackend",
    "RecaptionSettings",
    "RecaptionSummary",
    "VllmBackend",
    "build_prompt",
    "caption_all",
    "image_mime_type",
    "length_grouped",
    "read_captions",
    "read_failures",
    "recaption",
    "resolve_api_key",
]
