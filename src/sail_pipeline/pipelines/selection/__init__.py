"""SAIL-VL's SFT data selection experiments: quality, composition, incremental evaluation."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
