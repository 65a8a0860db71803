"""The stand-in LLM and vision tower (or the user's own, from a path)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
