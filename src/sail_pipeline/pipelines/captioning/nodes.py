"""Captioning nodes: the reference set, captioned by the oracle or an API, resumably."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import mlflow
import pandas as pd

from sail_pipeline.captioning import credentials
from sail_pipeline.captioning.api_client import ApiCaptioner, resolve_api_key
from sail_pipeline.captioning.backends import ApiBackend, CaptionBackend, OracleBackend
from sail_pipeline.captioning.params import CaptioningParams, ReferenceCaptionParams
from sail_pipeline.captioning.recaptioning import RecaptionSettings, recaption
from sail_pipeline.captioning.shards import read_captions, read_failures
from sail_pipeline.curation import CurationParams
from sail_pipeline.curation.params import WorldSource

log = logging.getLogger(__name__)
# Shards of an interrupted run live here; a re-run skips every id they already caption.
REFERENCE_SHARDS = Path("data/03_primary/reference_caption_shards")


def shard_dir(params: ReferenceCaptionParams) -> Path:
    """One folder per captioner setting: a re-run resumes, another model or prompt starts anew.

    Only what changes a caption counts: size, concurrency or retries do not.
    """
    api = params.api
    identity = {"backend": params.backend, "prompt": params.prompt,
                "api": None if api is None else {k: getattr(api, k) for k in (
                    "base_url", "model", "max_tokens", "temperature", "detail")}}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return REFERENCE_SHARDS / f"{params.backend}-{digest}"


def _oracle(curation: CurationParams, scenes: pd.DataFrame | None) -> OracleBackend:
    """The world's complete captions, keyed by the ids curation gave its scenes."""
    captions: dict[str, str] = {}
    for source in curation.sources:
        if isinstance(source, WorldSource) and scenes is not None:
            captions.update(zip(source.name + ":" + scenes["id"], scenes["reference_caption"],
                                strict=True))
    return OracleBackend(captions)


def _backend(params: ReferenceCaptionParams, curation: CurationParams,
             scenes: pd.DataFrame | None) -> CaptionBackend:
    if params.backend == "oracle":
        return _oracle(curation, scenes)
    assert params.api is not None  # checked by ReferenceCaptionParams
    key = resolve_api_key(params.api, credentials.lookup(params.credentials))
    return ApiBackend(ApiCaptioner(params.api, key))


def reference_set(manifest: pd.DataFrame, size: int | None) -> pd.DataFrame:
    """The first `size` kept ids by sha256: a stable, content-random sample of the pool."""
    ordered = manifest.sort_values(["sha256", "id"], kind="stable")
    return (ordered if size is None else ordered.head(size)).reset_index(drop=True)


def reference_captions(manifest: pd.DataFrame, captioning: dict, curation: dict,
                       world_scenes: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = CaptioningParams.model_validate(captioning).reference
    chosen = reference_set(manifest, params.size)
    settings = RecaptionSettings(backend=params.backend, shard_size=params.shard_size,
                                 batch_size=params.batch_size, caption_prompt=params.prompt,
                                 use_alt_text=False)
    shards = shard_dir(params)
    backend = _backend(params, CurationParams.model_validate(curation), world_scenes)
    summary = recaption(chosen, backend, shards, settings)
    wanted = set(chosen["id"])
    captions = read_captions(shards)
    failures = read_failures(shards)
    # Shards of an earlier, larger reference set may hold other ids: this run's set only.
    captions = captions[captions["id"].isin(wanted)].reset_index(drop=True)
    failures = failures[failures["id"].isin(wanted)].reset_index(drop=True)
    log.info("reference captions: %d of %d ids captioned by %s, %d failed", len(captions),
             len(chosen), params.backend, len(failures))
    if mlflow.active_run() is not None:
        mlflow.log_metrics({k.replace("recaption/", "reference_captions/"): v
                            for k, v in summary.metrics().items()})
    return captions, failures
