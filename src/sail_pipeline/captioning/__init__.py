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

__all__ = [
    "ApiCaptioner",
    "ApiKey",
    "ApiSettings",
    "CaptionRequest",
    "CaptionResult",
    "caption_all",
    "image_mime_type",
    "resolve_api_key",
]
