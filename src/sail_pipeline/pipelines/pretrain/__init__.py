"""Pretrain-Alignment and Pretrain-Advance."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
