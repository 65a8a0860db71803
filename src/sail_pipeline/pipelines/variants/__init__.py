"""Named variants of the recipe, each a namespaced instance with its own outputs and run."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
