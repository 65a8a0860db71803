"""Ingest, validate and dedup images; account for every record."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
