"""The recipe as a template: Alignment -> Advance -> the SFT curriculum -> evaluation."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
