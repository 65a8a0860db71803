"""The SFT curriculum: Knowledge -> Instruction -> Preference."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
