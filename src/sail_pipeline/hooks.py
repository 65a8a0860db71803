"""The project's Kedro hooks: validation at start, credentials, dry runs, MLflow lineage."""

from __future__ import annotations

import logging
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from pydantic import BaseModel

from sail_pipeline import lineage
from sail_pipeline.captioning import credentials
from sail_pipeline.io import DryRunDataset

log = logging.getLogger(__name__)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# MLflow 3 opens an experiment on its GenAI overview ("Traces 0") unless it is marked as
# model training, where runs, their charts and comparisons are.
MODEL_TRAINING = "custom_model_development"


class ValidateParametersHook:
    """Fail on bad parameters before any node runs, naming every bad key."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        context.project_params  # noqa: B018  (validates, or raises InvalidParameters)
        log.info("parameters validated")


class CredentialsHook:
    """API keys from conf/local/credentials.yml to the captioning nodes, never via parameters
    (MLflow logs those)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            found = context.config_loader["credentials"]
        except (MissingConfigException, KeyError):
            found = {}
        credentials.remember(found or {})


class DryRunHook:
    """`runtime.launcher.dry_run: true` prints every stage's command and writes no data: each
    dataset of the run saves into memory, and loads what this run saved, else what is on disk."""

    def __init__(self) -> None:
        self._dry_run = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._dry_run = context.project_params.runtime.launcher.dry_run

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if not self._dry_run:
            return
        for name in sorted(pipeline.datasets()):
            if name.startswith("params:") or name == "parameters":
                continue
            dataset = catalog.get(name)
            if dataset is not None:
                catalog[name] = DryRunDataset(dataset)
        log.info("dry run: nothing under data/ will be written")


class TrackingHook(MlflowHook):
    """kedro-mlflow's hook, plus lineage: commit, run name, the tree of instance runs.

    Registered instead of kedro-mlflow's own (settings.DISABLE_HOOKS_FOR_PLUGINS).
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        super().after_context_created(context)
        self._project_path = str(context.project_path)
        self._project = context.project_params

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        super().before_pipeline_run(run_params, pipeline, catalog)
        if not getattr(self, "_is_mlflow_enabled", False):
            return
        import mlflow

        run = mlflow.active_run()
        names = run_params.get("pipeline_names") or ["__default__"]
        described = "+".join("recipe" if n == "__default__" else n for n in names)
        project = self._project
        preset = project.pretrain.preset if project.pretrain is not None else "-"
        env = run_params.get("env") or "local"
        name = f"{described} · {preset} · seed {project.runtime.seed}" + (
            f" · {env}" if env not in ("local", "base") else "")
        mlflow.set_tags({"mlflow.runName": name, "runner": lineage.describe(
            run_params.get("runner")), "sail.dry_run": str(project.runtime.launcher.dry_run
                                                           ).lower(),
                         **lineage.git_state(self._project_path)})
        mlflow.MlflowClient().set_experiment_tag(run.info.experiment_id, EXPERIMENT_KIND_TAG,
                                                 MODEL_TRAINING)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                        is_async: bool) -> None:
        # kedro-mlflow flattens dict parameters into one MLflow param per key; it would log a
        # model as its repr. Hand it the plain values.
        plain = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v
                 for k, v in inputs.items()}
        super().before_node_run(node, catalog, plain, is_async)
        lineage.current_namespace.set(node.namespace)

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                       outputs: dict[str, Any], is_async: bool) -> None:
        lineage.current_namespace.set(None)

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        lineage.finish_instance_runs()
        super().after_pipeline_run(run_params, pipeline, catalog)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict, pipeline: Any,
                          catalog: Any) -> None:
        lineage.finish_instance_runs("FAILED")
        super().on_pipeline_error(error, run_params, pipeline, catalog)
