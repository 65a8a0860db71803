"""Build the recaptioning backend a `PoolRecaptionParams` names, and the identity of its captions.

The identity names everything that changes a caption (the captioner's weights, prompts,
generation length), so a re-run with the same captioner resumes its shards and a retrained
captioner starts a fresh folder instead of mixing two models' captions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sail_pipeline.captioning.api_client import resolve_api_key
from sail_pipeline.captioning.backends import BackendFactory
from sail_pipeline.captioning.params import PoolRecaptionParams

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weights_digest(model_dir: str | Path) -> str:
    """sha256 over a checkpoint's weight files (name and bytes), in name order."""
    folder = Path(model_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} holds no weight files (*.safetensors, *.bin)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def caption_identity(params: PoolRecaptionParams, model_dir: str | None) -> str:
    """A short name for "these captions": the folder their shards live in."""
    if params.backend in ("local", "vllm"):
        if model_dir is None:
            raise ValueError(f"backend {params.backend!r} needs the captioner's directory")
        captioner: Any = weights_digest(model_dir)
    elif params.backend == "api":
        assert params.api is not None  # checked by PoolRecaptionParams
        captioner = params.api.caption_identity()
    else:
        captioner = "oracle"
    identity = {"backend": params.backend, "captioner": captioner,
                "caption_prompt": params.caption_prompt,
                "recaption_prompt": params.recaption_prompt,
                "use_alt_text": params.use_alt_text, "max_new_tokens": params.max_new_tokens}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
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
