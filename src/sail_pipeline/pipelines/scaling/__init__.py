"""`kedro run --pipelines=scaling`: the data-size sweep, its fit, and the reproduction report."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
