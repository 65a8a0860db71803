"""`runtime`: what every pipeline shares (seed, threads, how training processes start)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sail_pipeline.schema.base import StrictModel, neutral


class LauncherParams(StrictModel):
    """How a training node starts its processes (`runtime.launcher`)."""

    num_gpus: int = Field(0, ge=0, description="GPUs per node; 0 runs one CPU process")
    num_nodes: int = Field(1, ge=1)
    hostfile: str | None = neutral(None)
    master_addr: str | None = neutral(None)
    master_port: int | None = neutral(None, ge=1024, le=65535)
    dry_run: bool = neutral(False, description="print every stage's command; write nothing")
    tail_lines: int = neutral(40, gt=0, description="log lines shown when a stage fails")
    # One process on one machine needs nothing from DeepSpeed's launcher but the rank
    # environment it would set; starting the trainer directly saves its two extra Python
    # start-ups (~10 s per stage on two cores). `warm` (on CPU) forks each stage from one
    # process that imported torch, transformers and DeepSpeed once per run
    # (training.warm; ~6 s less per stage); on a GPU it starts `direct`. `deepspeed` keeps
    # the launcher regardless.
    single_process: Literal["warm", "direct", "deepspeed"] = neutral(
        "warm", description="one process: warm (fork from a warm trainer, CPU), direct, "
                            "or deepspeed (its launcher)")

    @property
    def is_single_process(self) -> bool:
        return self.num_gpus <= 1 and self.num_nodes == 1 and not self.hostfile


class PointExecutorParams(StrictModel):
    """Where an experiment's points run (`runtime.points`): one after another in the Kedro
    process (`plain`), or as Ray tasks (`ray`), on a local Ray or a cluster; same results."""

    kind: Literal["plain", "ray"] = neutral("plain", description="plain: one point after "
                                            "another here; ray: each point a Ray task")
    ray_address: str | None = neutral(
        None, description="null: start a local Ray in this process; 'auto' or 'host:port': "
        "join that cluster")
    cpus_per_point: float = neutral(1, gt=0, description="CPUs Ray reserves for a point")
    gpus_per_point: float = neutral(0, ge=0, description="GPUs Ray reserves for a point (1: "
                                    "one point per GPU)")
    retries: int = neutral(1, ge=0, description="times a point whose worker died is run "
                           "again (an error in the point itself is not retried)")


class RuntimeParams(StrictModel):
    seed: int = 0
    threads: int = neutral(0, ge=0, description="torch threads per process; 0: all cores")
    peak_tflops: float | None = neutral(None, gt=0, description="device peak for MFU; "
                                        "default from the GPU's name, none on CPU")
    launcher: LauncherParams = Field(default_factory=LauncherParams)
    points: PointExecutorParams = neutral(default_factory=PointExecutorParams)
