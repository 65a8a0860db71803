"""lmms-eval on the recipe's checkpoints."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
