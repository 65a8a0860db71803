"""Build the recaptioning backend a `PoolRecaptionParams` names, and the identity of its captions.

The identity names everything that changes a caption (the captioner's weights or endpoint,
prompts, generation length), so a re-run with the same captioner resumes its shards and a retrained
captioner starts a fresh folder instead of mixing two models' captions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sail_pipeline import identity as digests
from sail_pipeline.captioning.api_client import resolve_api_key
from sail_pipeline.captioning.backends import BackendFactory
from sail_pipeline.schema import ApiParams, PoolRecaptionParams, RecaptionParams, result_settings

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weights_digest(model_dir: str | Path) -> str:
    """sha256 over a checkpoint's weight files (name and bytes), in name order."""
    folder = Path(model_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} holds no weight files (*.safetensors, *.bin)")
    return digests.named_bytes_digest(files)


def caption_identity(params: RecaptionParams, model_dir: str | None = None,
                     api: ApiParams | None = None) -> str:
    """A short name for "these captions": the folder their shards live in.

    It covers the captioner (its weights' digest, the endpoint's result settings, or the
    oracle) and every recaptioning setting that changes a caption (`result_settings`:
    prompts, `use_alt_text`, generation length), and nothing that only changes how they are
    fetched (batch and shard sizes, concurrency, retries, the executor).
    """
    if params.backend in ("local", "vllm"):
        if model_dir is None:
            raise ValueError(f"backend {params.backend!r} needs the captioner's directory")
        captioner: Any = weights_digest(model_dir)
    elif params.backend == "api":
        if api is None:
            raise ValueError("backend 'api' needs its `api` settings")
        captioner = result_settings(api)
    else:
        captioner = "oracle"
    settings = {k: v for k, v in result_settings(params).items()
                if k in RecaptionParams.model_fields}
    identity = {"captioner": captioner, **settings}
    digest = digests.payload_digest(identity, 10)
    return f"{params.backend}-{digest}"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def backend_factory(params: PoolRecaptionParams, model_dir: str | None,
                    credentials: Mapping[str, Any] | None = None,
                    oracle_captions: Mapping[str, str] | None = None) -> BackendFactory:
    """How to build the backend `params.backend` names: call it here, or hand it to Ray."""
    if params.backend in ("local", "vllm") and model_dir is None:
        raise ValueError(f"backend {params.backend!r} needs the captioner's directory")
    if params.backend == "local":
        return BackendFactory.local(str(model_dir), params.max_new_tokens,
                                    resolve_device(params.device), params.batch_size)
    if params.backend == "vllm":
        return BackendFactory.vllm(str(model_dir), params.max_new_tokens)
    if params.backend == "api":
        assert params.api is not None  # checked by PoolRecaptionParams
        return BackendFactory.api(params.api, resolve_api_key(params.api, credentials))
    return BackendFactory.oracle(oracle_captions or {})
