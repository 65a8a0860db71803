"""Captioning nodes (SAIL-Caption): reference captions -> captioner -> recaption the pool.

The heavy lifting is in `sail_pipeline.captioning`; these nodes wire it to the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.captioning import credentials
from sail_pipeline.captioning.api_client import ApiCaptioner, resolve_api_key
from sail_pipeline.captioning.backends import (
    ApiBackend,
    BackendFactory,
    CaptionBackend,
    OracleBackend,
)
from sail_pipeline.captioning.captioner_data import captioner_tables
from sail_pipeline.captioning.factory import backend_factory, caption_identity
from sail_pipeline.captioning.recaptioning import recaption
from sail_pipeline.captioning.shards import read_captions, read_failures
from sail_pipeline.curation.sources import world_values
from sail_pipeline.engine import stage as engine_stage
from sail_pipeline.errors import UserError
from sail_pipeline.schema import (
    CaptionerParams,
    CurationParams,
    ExecutorParams,
    PoolRecaptionParams,
    ReferenceCaptionParams,
    RuntimeParams,
)

log = logging.getLogger(__name__)
def _oracle(curation: CurationParams, scenes: pd.DataFrame | None) -> OracleBackend:
    """The world's complete captions, keyed by the ids curation gave its scenes."""
    return OracleBackend(world_values(curation.sources, scenes, "reference_caption"))


def _backend(params: ReferenceCaptionParams, curation: CurationParams,
             scenes: pd.DataFrame | None) -> CaptionBackend:
    if params.backend == "oracle":
        return _oracle(curation, scenes)
    assert params.api is not None  # checked by ReferenceCaptionParams
    key = resolve_api_key(params.api, credentials.lookup(params.credentials))
    return ApiBackend(ApiCaptioner(params.api, key))


def _outcomes(shards: Path, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Captions and failures of `table`'s ids from the shards.

    The folder may hold other ids, from an earlier run over a larger set: this run's only.
    """
    wanted = set(table["id"])
    captions, failures = read_captions(shards), read_failures(shards)
    return (captions[captions["id"].isin(wanted)].reset_index(drop=True),
            failures[failures["id"].isin(wanted)].reset_index(drop=True))


def reference_set(manifest: pd.DataFrame, size: int | None) -> pd.DataFrame:
    """The first `size` kept ids by sha256: a stable, content-random sample of the pool."""
    ordered = manifest.sort_values(["sha256", "id"], kind="stable")
    return (ordered if size is None else ordered.head(size)).reset_index(drop=True)


def reference_captions(manifest: pd.DataFrame, params: ReferenceCaptionParams,
                       curation: CurationParams, world_scenes: pd.DataFrame | None,
                       shard_root: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    chosen = reference_set(manifest, params.size)
    settings = params.recaption_params()
    shards = Path(shard_root) / caption_identity(settings, api=params.api)
    backend = _backend(params, curation, world_scenes)
    summary = recaption(chosen, backend, shards, settings)
    captions, failures = _outcomes(shards, chosen)
    log.info("reference captions: %d of %d ids captioned by %s, %d failed", len(captions),
             len(chosen), params.backend, len(failures))
    lineage.log_metrics({k.replace("recaption/", "reference_captions/"): v
                         for k, v in summary.metrics().items()})
    return captions, failures


def _required(captioner: CaptionerParams | None) -> CaptionerParams:
    if captioner is None:
        raise ValueError("parameters `captioning.captioner` are missing: the captioner and "
                         "recaption nodes need them (see conf/base/parameters_captioning.yml)")
    return captioner


def make_captioner_tables(reference_captions: pd.DataFrame, manifest: pd.DataFrame,
                          prompts: PoolRecaptionParams, captioner: CaptionerParams | None,
                          seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Caption-prompt and alt-text recaption-prompt rows for every reference image."""
    tables = captioner_tables(reference_captions, manifest, prompts,
                              _required(captioner).eval_fraction, seed)
    for reason, count in tables.skipped.items():
        if count:
            log.warning("captioner tables: %d reference ids skipped: %s", count, reason)
    log.info("captioner tables: %d train rows, %d eval rows from %d reference captions",
             len(tables.train), len(tables.eval), len(reference_captions))
    return tables.train, tables.eval


class NoCaptionerData(UserError, ValueError):
    """The captioner's table is empty: nothing to train on."""


def train_captioner(train: str, evaluation: str, tokenizer: str, llm: dict, vision: dict,
                    captioner: CaptionerParams | None, preset: str, runtime: RuntimeParams,
                    workdir: str) -> dict[str, Any]:
    """SAIL-Captioner: fine-tune a VLM on the reference captions (or take the user's)."""
    params = _required(captioner)
    if params.source == "path":
        given = Path(str(params.path))
        if not given.is_dir():
            raise FileNotFoundError(f"captioning.captioner.path: {given} is not a directory")
        return engine_stage.from_path(str(given.resolve()))
    assert params.train is not None  # checked by CaptionerParams
    if not runtime.launcher.dry_run and len(pd.read_parquet(train, columns=["id"])) == 0:
        raise NoCaptionerData(
            f"the captioner has no training rows ({train}): no reference caption succeeded. "
            f"See data/08_reporting/ and the reference captions' failures for why (e.g. the "
            f"`oracle` backend captions only the world's scenes), then run again")
    if params.init_from is not None:
        start: dict[str, Any] = {"init_from": params.init_from}
    else:
        start = {"preset": preset, "tokenizer_path": tokenizer, "llm_path": llm["hf_dir"],
                 "vision_path": vision["hf_dir"]}
    return engine_stage.train("captioner", params.train, runtime, workdir, train,
                               evaluation, **start)


def _recaption_backend(params: PoolRecaptionParams, captioner: dict,
                       oracle_captions: Mapping[str, str] | None = None
                       ) -> CaptionBackend | BackendFactory:
    """A built backend, or on Ray its recipe: each Ray actor then loads its own captioner."""
    factory = backend_factory(params, captioner.get("hf_dir"),
                              credentials.lookup(params.credentials), oracle_captions)
    return factory if params.executor.kind == "ray" else factory()


def recaption_pool(manifest: pd.DataFrame, captioner: dict, params: PoolRecaptionParams,
                   curation: CurationParams, world_scenes: pd.DataFrame | None,
                   shard_root: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every kept id ends with exactly one caption or a failure with its reason."""
    oracle_captions = (_oracle(curation, world_scenes).captions
                       if params.backend == "oracle" else None)
    backend = _recaption_backend(params, captioner, oracle_captions)
    shards = Path(shard_root) / caption_identity(params, captioner.get("hf_dir"), params.api)
    summary = recaption(manifest, backend, shards, params)
    captions, failures = _outcomes(shards, manifest)
    log.info("recaptions: %d of %d kept ids captioned, %d failed (shards in %s)",
             len(captions), len(manifest), len(failures), shards)
    lineage.log_metrics(summary.metrics())
    return captions, failures


# Caption sources of the held-out table; slugs name their MLflow metrics.
HELDOUT_MODES = {"captioner_caption_prompt": False, "captioner_recaption_prompt": True}


def score_heldout(world_scenes: pd.DataFrame | None, captioner: dict,
                  params: PoolRecaptionParams, shard_root: str) -> tuple[pd.DataFrame, Any]:
    """The captioner on the world's held-out scenes vs their alt-text, against the truth.

    Fact recall / precision of `world_caption` (`evaluation.caption_score`): the scenes are
    the benchmark split, which neither the reference set nor the pool contains.
    """
    from sail_pipeline.captioning.heldout_chart import heldout_chart
    from sail_pipeline.evaluation.caption_score import score_captions

    if world_scenes is None or params.backend == "oracle":
        log.info("captioner held-out scores skipped: %s", "no world scenes"
                 if world_scenes is None else "the oracle backend is the reference itself")
        table = pd.DataFrame(columns=["captions", "scenes", "score"])
        return table, heldout_chart(table)
    scenes = world_scenes[world_scenes["split"] == "benchmark"].reset_index(drop=True)
    rows = [{"captions": "alt_text", "scenes": len(scenes),
             **score_captions(scenes, scenes["alt_text"].fillna("").tolist())}]
    # A few hundred scenes: the plain executor, one backend built once for both prompts.
    params = params.model_copy(update={"executor": ExecutorParams()})
    backend = _recaption_backend(params, captioner)
    for mode, use_alt_text in HELDOUT_MODES.items():
        settings = params.model_copy(update={"use_alt_text": use_alt_text})
        shards = Path(shard_root) / caption_identity(settings, captioner.get("hf_dir"),
                                                     params.api)
        recaption(scenes, backend, shards, settings, progress=False)
        found = read_captions(shards).set_index("id")["caption"]
        # A failed scene scores as an empty caption: every fact missed, none invented.
        captions = [str(found.get(i, "")) for i in scenes["id"]]
        rows.append({"captions": mode, "scenes": len(scenes),
                     **score_captions(scenes, captions)})
    table = pd.DataFrame(rows)
    log.info("captioner on %d held-out scenes:\n%s", len(scenes),
             table.to_string(index=False, float_format="%.3f"))
    lineage.log_metrics({f"captioner_heldout/{row['captions']}/{metric}": float(row[metric])
                         for row in rows for metric in row
                         if metric not in ("captions", "scenes")})
    return table, heldout_chart(table)
