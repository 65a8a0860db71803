"""MLflow lineage: which code, which data, and where a run sits in the tree.

The tree: the Kedro run (kedro-mlflow's) is the parent; a namespaced instance of the recipe
(a variant, a sweep point) is its child; each training stage is a grandchild, or a child when
the recipe runs without a namespace. kedro-mlflow maps one Kedro run to one MLflow run and has
no nested-run API, so the instance runs are made here, by run id, and handed to the trainer
(`TrackingConfig.parent_run_id`).

No Kedro here: the trainer imports `log_table_inputs` in its own process.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

from sail_pipeline.identity import file_digest

log = logging.getLogger(__name__)

INSTANCE_TAG = "sail.instance"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# The namespace of the node running now (set by the project's hook before each node); None
# outside a namespaced instance.
current_namespace: ContextVar[str | None] = ContextVar("current_namespace", default=None)
_instance_runs: dict[tuple[str, str], str] = {}
# A run to log into named by id, where no MLflow run is active: a point run as a Ray task
# logs into the point's run, which the Kedro process made (`tracking_into`).
_explicit_target: ContextVar[tuple[str, str] | None] = ContextVar("explicit_target",
                                                                 default=None)


@lru_cache(maxsize=4)
def git_state(root: str = ".") -> dict[str, str]:
    """The commit of the checkout at `root` as MLflow's own `mlflow.source.git.commit` tag
    (the UI shows it on every run), and `git.commit` / `git.dirty` ({} outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git.commit": commit,
            "git.dirty": str(dirty).lower()}


def log_table_inputs(tables: dict[str, str | None]) -> None:
    """Log each Parquet table (`context -> path`) as an MLflow dataset input of the active run."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    for context, path in tables.items():
        if path is None or not Path(path).exists():
            continue
        dataset = MetaDataset(resolve_dataset_source(str(Path(path).resolve())),
                              name=Path(path).stem, digest=file_digest(path))
        mlflow.log_input(dataset, context=context)


def mark_model_training(experiment_id: str) -> None:
    """MLflow 3 opens an experiment on its GenAI overview ("Traces 0") unless it is marked as
    model training, where runs, their charts and comparisons are."""
    from mlflow import MlflowClient

    MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)


def instance_run(namespace: str, parent_run_id: str, experiment_id: str,
                 tags: dict[str, str] | None = None) -> str:
    """The run of one namespaced instance under the Kedro run: found by tag, else made."""
    key = (parent_run_id, namespace)
    if key in _instance_runs:
        return _instance_runs[key]
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient()
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{INSTANCE_TAG}` = '{namespace}' and "
        f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(experiment_id, run_name=namespace, tags={
            MLFLOW_PARENT_RUN_ID: parent_run_id, INSTANCE_TAG: namespace, **(tags or {})})
        run_id = run.info.run_id
        log.info("MLflow: run %s for instance %r under %s", run_id, namespace, parent_run_id)
    _instance_runs[key] = run_id
    return run_id


def finish_instance_runs(status: str = "FINISHED") -> None:
    """Close the instance runs this process opened (after the Kedro pipeline ends)."""
    if not _instance_runs:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    for run_id in _instance_runs.values():
        client.set_terminated(run_id, status=status)
    _instance_runs.clear()


@contextmanager
def tracking_into(experiment_id: str, run_id: str) -> Iterator[None]:
    """Log what runs inside (trainer runs, metrics) into the run `run_id`, active or not."""
    token = _explicit_target.set((experiment_id, run_id))
    try:
        yield
    finally:
        _explicit_target.reset(token)


def tracking_target() -> tuple[str, str] | None:
    """(experiment id, run id) that the code running now logs into, or None without MLflow.

    The run named by `tracking_into`; else the active (Kedro) run, or the run of the
    namespaced instance whose node is running.
    """
    explicit = _explicit_target.get()
    if explicit is not None:
        return explicit
    import mlflow

    active = mlflow.active_run()
    if active is None:
        return None
    namespace = current_namespace.get()
    if namespace is None:
        return active.info.experiment_id, active.info.run_id
    # A dotted namespace is a path down the tree: "selection_quality.<point>" is a child of
    # the experiment's run, itself a child of the Kedro run.
    run_id = active.info.run_id
    parts = namespace.split(".")
    for depth in range(1, len(parts) + 1):
        run_id = instance_run(".".join(parts[:depth]), run_id, active.info.experiment_id,
                              git_state())
    return active.info.experiment_id, run_id


@contextmanager
def instance(namespace: str) -> Iterator[None]:
    """Track what runs inside (trainer runs, metrics, params) in the child run `namespace`,
    below the run of the namespace already current, if any."""
    outer = current_namespace.get()
    token = current_namespace.set(f"{outer}.{namespace}" if outer else namespace)
    try:
        yield
    finally:
        current_namespace.reset(token)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Metrics into `tracking_target()`; nothing when MLflow is not tracking this run."""
    target = tracking_target()
    if target is None:
        return
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient().log_batch(target[1], metrics=[
        Metric(key, float(value), now, step or 0) for key, value in metrics.items()])


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: one MLflow parameter per leaf."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_params(params: dict[str, Any]) -> None:
    """Parameters (nested dicts flattened) into `tracking_target()`; none without MLflow."""
    target = tracking_target()
    if target is None or not params:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param

    flat = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
    client = MlflowClient()
    for start in range(0, len(flat), 100):  # MLflow takes at most 100 per batch
        client.log_batch(target[1], params=flat[start:start + 100])


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    target = tracking_target()
    if target is None:
        return
    from mlflow import MlflowClient

    MlflowClient().log_artifact(target[1], str(path), artifact_path)


def log_figure(figure: Any, artifact_file: str) -> None:
    """A matplotlib figure as a PNG artifact of `tracking_target()`."""
    target = tracking_target()
    if target is None:
        return
    from mlflow import MlflowClient

    MlflowClient().log_figure(target[1], figure, artifact_file)


def set_tags(tags: dict[str, str]) -> None:
    """Tags (`mlflow.runName` renames the run) on `tracking_target()`."""
    target = tracking_target()
    if target is None:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(target[1], key, value)


def describe(value: Any) -> str:
    """A class name for a tag: `SequentialRunner`, not its object repr."""
    text = str(value)
    if text.startswith("<") and " object at 0x" in text:
        return text[1:].split(" object at")[0].rsplit(".", 1)[-1]
    return text
