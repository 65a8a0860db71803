"""Curation node: every configured source → validated, deduplicated manifest + quarantine."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.curation import (
    CurationParams,
    ParquetTable,
    curate_to_parquet,
    funnel_metrics,
)
from sail_pipeline.curation.chart import funnel_chart
from sail_pipeline.curation.funnel import NOTE, TOTAL, funnel_count
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


def curate(params: CurationParams, world_scenes: pd.DataFrame | None, workdir: str
           ) -> tuple[ParquetTable, ParquetTable, pd.DataFrame, object]:
    """The manifest and the quarantine are streamed into `workdir` and handed on as files
    (`ParquetTable`), which the catalog moves into place: the node never holds the images."""
    scenes = _world_scenes(params, world_scenes)
    folder = Path(workdir)
    files = curate_to_parquet(params.sources, folder / "manifest.parquet",
                              folder / "quarantine.parquet", params.settings,
                              world_scenes=scenes, executor=params.executor)
    manifest, quarantine, funnel = files.manifest, files.quarantine, files.funnel
    log.info("curation: dedup and id indexes %.1f MiB at the end (%d records)",
             files.index_bytes / 2**20, files.count("input"))
    log.info("curation: %d records in, %d kept, %d quarantined", funnel_count(funnel, "input"),
             funnel_count(funnel, "kept"), funnel_count(funnel, "quarantined"))
    reasons = funnel[~funnel["stage"].isin([TOTAL, NOTE]) & (funnel["count"] > 0)]
    if len(reasons):
        reasons = reasons.sort_values("count", ascending=False, kind="stable")
        log.info("quarantined by reason: %s", ", ".join(
            f"{r} {n}" for r, n in zip(reasons["reason"], reasons["count"], strict=True)))
    lineage.log_metrics({k: float(v) for k, v in funnel_metrics(funnel).items()})
    return manifest, quarantine, funnel, funnel_chart(funnel)
