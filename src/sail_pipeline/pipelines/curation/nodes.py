"""Curation node: every configured source → validated, deduplicated manifest + quarantine."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd

from sail_pipeline.curation import CurationParams, funnel_metrics, run_curation
from sail_pipeline.curation.chart import funnel_chart
from sail_pipeline.curation.params import WorldSource

log = logging.getLogger(__name__)


def _world_scenes(params: CurationParams) -> pd.DataFrame | None:
    paths = {source.path for source in params.sources if isinstance(source, WorldSource)}
    if not paths:
        return None
    if len(paths) > 1:
        raise ValueError(f"world sources name different scene tables: {sorted(paths)}")
    path = Path(paths.pop())
    if not path.exists():
        raise FileNotFoundError(f"curation source `world` reads {path}, which does not exist: "
                                "run `kedro run --pipelines=data` first")
    return pd.read_parquet(path)


def curate(curation: dict):
    params = CurationParams.model_validate(curation)
    result = run_curation(params.sources, params.settings, world_scenes=_world_scenes(params))
    log.info("curation: %d records in, %d kept, %d quarantined", result.count("input"),
             result.count("kept"), result.count("quarantined"))
    reasons = result.quarantine["reason"].value_counts()
    if len(reasons):
        log.info("quarantined by reason: %s", ", ".join(f"{r} {n}" for r, n in reasons.items()))
    if mlflow.active_run() is not None:
        mlflow.log_metrics({k: float(v) for k, v in funnel_metrics(result.funnel).items()})
    return result.manifest, result.quarantine, result.funnel, funnel_chart(result.funnel)
