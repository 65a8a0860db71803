"""`kedro run --pipelines=quality`: caption signals, statistics, filter, the pretraining pool."""

from sail_pipeline.pipelines.quality.pipeline import create_pipeline

__all__ = ["create_pipeline"]
