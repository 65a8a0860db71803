"""Each pool id's world scene, for the oracle judge (and the garbage benchmark's clean captions)."""

from __future__ import annotations

import pandas as pd

from sail_pipeline.curation.sources import world_values
from sail_pipeline.schema import CurationParams


def ground_truth(manifest: pd.DataFrame, scenes: pd.DataFrame | None,
                 curation: CurationParams) -> pd.Series:
    """Each pool id's world scene (JSON), for the oracle judge; None where it has none."""
    truth = world_values(curation.sources, scenes, "ground_truth")
    return manifest["id"].map(truth).astype(object).where(manifest["id"].isin(truth), None)
