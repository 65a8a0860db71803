"""Captioner backends: the recaptioning stage calls these from Kedro nodes or plain scripts.

Names are imported on first use, so that importing one of them does not load aiohttp and
every backend. The settings models are in `sail_pipeline.schema` (ApiParams, RecaptionParams).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    **dict.fromkeys(["ApiCaptioner", "ApiKey", "CaptionRequest", "CaptionResult", "caption_all",
                     "image_mime_type", "resolve_api_key"], "api_client"),
    **dict.fromkeys(["ApiBackend", "BackendFactory", "CaptionBackend", "CaptionItem",
                     "CaptionOutcome", "LocalBackend", "OracleBackend", "VllmBackend",
                     "build_backend"], "backends"),
    # Not a module named `recaption`: importing it would rebind the package's `recaption`
    # from the function to the module.
    **dict.fromkeys(["RecaptionSummary", "build_prompt", "length_grouped", "recaption"],
                    "recaptioning"),
    **dict.fromkeys(["read_captions", "read_failures"], "shards"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
