"""Where an experiment's points run: one after another here (`plain`), or as Ray tasks (`ray`).

A *job* is one point: a function that runs it (builds its chain from the shared inputs and
runs it through the point store) and the MLflow run it logs into. `run_jobs` yields each
job's result, or the exception that ended it, as it finishes:

- `plain`: in order, in this process;
- `ray`: every job submitted at once as a Ray task that reserves `cpus_per_point` CPUs and
  `gpus_per_point` GPUs, so a GPU cluster runs one point per GPU. The shared inputs (a
  sweep's pool and images) go to Ray's object store once, not once per point. A task whose
  worker dies (killed, out of memory, a lost node) runs again up to `retries` times; an
  error raised by the point itself is not retried.

A point is recorded once however often it runs: the point store publishes its folder by
one rename, and the result found there wins (`engine.store`); its MLflow run is made by
the driver before the task starts, and a retried attempt first deletes the trainer runs that
a dead attempt left open under it. Ray Tune's trial model is not used: see
docs/guides/ray.md ("Sweeps on Ray") for why. No Kedro here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sail_pipeline import lineage
from sail_pipeline.schema import PointExecutorParams

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Job:
    """One point: `run(*shared)` returns its result; `tracking` is (tracking URI, experiment
    id, run id) of the MLflow run it logs into, or None; `namespace` names its trainer runs
    (`<namespace>.<stage>`) as the point's Kedro node would; `key` is the caller's."""

    label: str
    run: Callable[..., dict[str, Any]]
    tracking: tuple[str, str, str] | None = None
    namespace: str | None = None
    key: Any = None


def run_jobs(jobs: Sequence[Job], shared: Sequence[Any], settings: PointExecutorParams
             ) -> Iterator[tuple[Job, dict[str, Any] | BaseException]]:
    """Each job with its result, or the exception that ended it, in the order they finish."""
    if settings.kind == "ray":
        yield from _on_ray(jobs, shared, settings)
        return
    for job in jobs:
        try:
            yield job, _run(job, *shared)
        except Exception as error:  # noqa: BLE001 - the caller records it with the point
            yield job, error


def _run(job: Job, *shared: Any) -> dict[str, Any]:
    if job.tracking is None:
        return job.run(*shared)
    _uri, experiment_id, run_id = job.tracking
    token = lineage.current_namespace.set(job.namespace)
    try:
        with lineage.tracking_into(experiment_id, run_id):
            return job.run(*shared)
    finally:
        lineage.current_namespace.reset(token)


def _on_ray(jobs: Sequence[Job], shared: Sequence[Any], settings: PointExecutorParams
            ) -> Iterator[tuple[Job, dict[str, Any] | BaseException]]:
    from sail_pipeline.executors import ensure_ray
    from sail_pipeline.schema.executor import ExecutorParams

    ray = ensure_ray(ExecutorParams(kind="ray", ray_address=settings.ray_address))
    task = ray.remote(ray_job).options(num_cpus=settings.cpus_per_point,
                                       num_gpus=settings.gpus_per_point,
                                       max_retries=settings.retries, retry_exceptions=False)
    shared_refs = [ray.put(value) for value in shared]
    pending = {task.remote(job, *shared_refs): job for job in jobs}
    log.info("%d points submitted to Ray (%s CPU, %s GPU each; %s)", len(pending),
             settings.cpus_per_point, settings.gpus_per_point,
             ", ".join(f"{k} {v:g}" for k, v in sorted(ray.cluster_resources().items())
                       if k in ("CPU", "GPU")))
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            job = pending.pop(ref)
            try:
                yield job, ray.get(ref)
            except Exception as error:  # noqa: BLE001
                yield job, _cause(error)


def _cause(error: BaseException) -> BaseException:
    """The point's own exception out of Ray's wrapper (a dead worker stays Ray's error)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def ray_job(job: Job, *shared: Any) -> dict[str, Any]:
    """A point as a Ray task: log into its MLflow run (after deleting the trainer runs that a
    dead attempt left open there), then run it."""
    if job.tracking is not None:
        import mlflow

        mlflow.set_tracking_uri(job.tracking[0])
        close_dead_attempts(job.tracking[2])
    return _run(job, *shared)


def close_dead_attempts(run_id: str) -> int:
    """Delete the runs still open under `run_id`: a killed attempt's trainer runs. A point
    runs one attempt at a time, so an open run there is a dead one's."""
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient()
    parent = client.get_run(run_id)
    stale = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}' and attributes.status = 'RUNNING'"))
    for run in stale:
        client.delete_run(run.info.run_id)
        log.warning("deleted MLflow run %s (%s) that a killed attempt of this point left open",
                    run.info.run_id, run.data.tags.get("mlflow.runName", ""))
    return len(stale)
