"""World -> tokenizer -> the tables every stage trains on."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
