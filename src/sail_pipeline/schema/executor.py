"""`executor:` in the curation and recaptioning parameters: where per-batch work runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sail_pipeline.schema.base import StrictModel

ExecutorKind = Literal["plain", "ray"]


class ExecutorParams(StrictModel):
    """`executor:` in the curation and recaptioning parameters."""

    kind: ExecutorKind = "plain"
    ray_address: str | None = Field(
        None, description="null: start a local Ray in this process; 'auto' or "
        "'ray://head:10001': join that cluster (an already initialised Ray is used as is)")
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a local Ray; null: all")
    batch_size: int = Field(64, gt=0, description="rows per call of a batch function")
    chunk_size: int = Field(
        4096, gt=0, description="rows the driver reads and hands over at a time (curation); "
        "bounds the raw bytes held in memory")
    concurrency: int = Field(1, gt=0, description="actors of a stateful function (model copies)")
    num_gpus: float = Field(0, ge=0, description="GPUs per actor or task on Ray")

    @model_validator(mode="after")
    def _num_cpus_only_locally(self) -> ExecutorParams:
        # Ray refuses num_cpus when joining a cluster; say so before any work starts.
        if self.ray_address is not None and self.num_cpus is not None:
            raise ValueError("num_cpus sizes a local Ray; with ray_address the cluster's "
                             "own resources apply: leave num_cpus null")
        return self
