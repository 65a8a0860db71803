"""Curation node: every configured source → validated, deduplicated manifest + quarantine."""

from __future__ import annotations

import logging

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.curation import CurationParams, funnel_metrics, run_curation
from sail_pipeline.curation.chart import funnel_chart
from sail_pipeline.schema import WorldSource

log = logging.getLogger(__name__)


def _world_scenes(params: CurationParams, scenes: pd.DataFrame | None) -> pd.DataFrame | None:
    if not any(isinstance(source, WorldSource) for source in params.sources):
        return None
    if scenes is None:
        raise FileNotFoundError("curation source `world` needs the world's scene table "
                                "(`world_scenes` in the catalog): run `kedro run "
                                "--pipelines=data` first, or in the same run")
    return scenes


def curate(params: CurationParams, world_scenes: pd.DataFrame | None):
    result = run_curation(params.sources, params.settings,
                          world_scenes=_world_scenes(params, world_scenes),
                          executor=params.executor)
    log.info("curation: %d records in, %d kept, %d quarantined", result.count("input"),
             result.count("kept"), result.count("quarantined"))
    reasons = result.quarantine["reason"].value_counts()
    if len(reasons):
        log.info("quarantined by reason: %s", ", ".join(f"{r} {n}" for r, n in reasons.items()))
    lineage.log_metrics({k: float(v) for k, v in funnel_metrics(result.funnel).items()})
    return result.manifest, result.quarantine, result.funnel, funnel_chart(result.funnel)
