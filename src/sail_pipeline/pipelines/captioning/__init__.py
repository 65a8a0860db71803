"""SAIL-Caption: reference captions, the captioner, recaptions of the pool."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
