"""The project's Kedro hooks: validation at start, credentials, dry runs, output locks,
dvc.lock, MLflow lineage."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from pydantic import BaseModel

from sail_pipeline import identity, lineage
from sail_pipeline.captioning import credentials
from sail_pipeline.engine.progress import PointProgress
from sail_pipeline.experiments.scaling.mlflow_view import print_links
from sail_pipeline.experiments.scaling.plan import Point, sweep_description
from sail_pipeline.glue.io import DryRunDataset, LoadedOnce
from sail_pipeline.glue.run_lock import OutputLocks
from sail_pipeline.glue.run_timing import RunTiming, breakdown
from sail_pipeline.process_stats import process_started_at
from sail_pipeline.schema import CHAIN_PIPELINES

log = logging.getLogger(__name__)


class ValidateParametersHook:
    """Fail on bad parameters before any node runs, naming every bad key; then, once the
    pipeline is known, on settings its nodes cannot run with together."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from sail_pipeline.glue.project import unread_local_warning
        from sail_pipeline.glue.validation import advisories

        unread = unread_local_warning(Path(context.project_path), context.env)
        if unread:  # first: a bad key it reports may be one the ignored file sets right
            log.warning(unread)
        self._project = context.project_params  # validates, or raises InvalidParameters
        log.info("parameters validated")
        for note in advisories(self._project):
            log.warning(note)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        from sail_pipeline.glue.validation import combination_problems
        from sail_pipeline.schema import InvalidParameters
        from sail_pipeline.schema.project import format_problems

        nodes = {node.name.rpartition(".")[2] for node in pipeline.nodes}
        problems = combination_problems(self._project, nodes)
        if problems:
            raise InvalidParameters(format_problems(problems))


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
    dataset of the run saves into memory, and loads what this run saved, else what is on disk
    (the registry has stood in for every node that is not a training stage: glue.dry_run)."""

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


class OutputLockHook:
    """A run locks every dataset it writes before its first node (`sail_pipeline.glue.run_lock`);
    first of the run's hooks, so a refused run starts no MLflow run. Not on a dry run, which
    writes nothing."""

    def __init__(self) -> None:
        self._locks: OutputLocks | None = None
        self._dry_run = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._dry_run = context.project_params.runtime.launcher.dry_run
        self._locks = OutputLocks(Path(context.project_path) / context.config_loader[
            "globals"]["data"])

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if self._locks is None or self._dry_run:
            return
        count = self._locks.acquire(pipeline.all_outputs())
        log.info("locked the %d datasets this run writes (%s)", count, self._locks.folder)

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if self._locks is not None:
            self._locks.release()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict, pipeline: Any,
                          catalog: Any) -> None:
        if self._locks is not None:
            self._locks.release()


class NodeTimingHook:
    """Times every node, with the phases of the training stages it ran, and saves the record
    as the catalog's `run_timing` (`tools/run_breakdown.py` reads it). Not on a dry run."""

    def __init__(self) -> None:
        self._timing: RunTiming | None = None
        self._dry_run = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._dry_run = context.project_params.runtime.launcher.dry_run
        self._timing = RunTiming(process_started_at())

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if self._timing is not None:
            self._timing.pipeline_start()

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                        is_async: bool) -> None:
        if self._timing is not None:
            self._timing.node_start(node.name)

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                       outputs: dict[str, Any], is_async: bool) -> None:
        if self._timing is not None:
            self._timing.node_end(node.name, node.namespace, outputs)

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if self._timing is None or self._dry_run or "run_timing" not in catalog:
            return
        record = self._timing.record()
        catalog.save("run_timing", record)
        nodes, phases = breakdown(record)
        top = ", ".join(f"{k} {v:.0f}s" for k, v in list(phases.items())[:6])
        slowest = ", ".join(f"{n['node']} {n['seconds']:.0f}s" for n in nodes[:3])
        log.info("run took %.0fs: %s; slowest nodes: %s (tools/run_breakdown.py for the "
                 "whole table)", record["wall_seconds"], top, slowest)


def kedro_command(run_params: dict) -> list[str]:
    """The `kedro run` command line that a run's parameters describe."""
    command = ["kedro", "run"]
    if run_params.get("env"):
        command.append(f"--env={run_params['env']}")
    for key, flag in (("pipeline_names", "--pipelines"), ("namespaces", "--namespaces"),
                      ("tags", "--tags"), ("node_names", "--nodes"),
                      ("from_nodes", "--from-nodes"), ("to_nodes", "--to-nodes")):
        if run_params.get(key):
            command.append(f"{flag}={','.join(run_params[key])}")
    if run_params.get("runtime_params"):
        # Kedro nests a dotted key (`runtime.points.kind=ray`); it is written back as typed.
        pairs = ",".join(f"{k}={v}" for k, v in
                         lineage.flatten(run_params["runtime_params"]).items())
        command += ["--params", pairs]
    return command


class ProvenanceHook:
    """Saves where a run's results came from (commit, code digest, date, machine, command)
    into the catalog's `run_provenance`, under the run's pipelines (`__default__` for the
    chain), so each results page names the run that wrote its data. Not on a dry run."""

    def __init__(self) -> None:
        self._dry_run = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._dry_run = context.project_params.runtime.launcher.dry_run

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if self._dry_run or "run_provenance" not in catalog:
            return
        from sail_pipeline import provenance

        key = ",".join(run_params.get("pipeline_names") or ["__default__"])
        records = catalog.load("run_provenance") if catalog.exists("run_provenance") else {}
        records[key] = provenance.record(kedro_command(run_params),
                                         Path(run_params["project_path"]))
        catalog.save("run_provenance", records)


class DvcLockHook:
    """After a whole-pipeline `kedro run`, record in dvc.lock what it produced, as `dvc repro`
    would have: `dvc status` is then clean and `dvc repro` runs nothing.

    One DVC stage per pipeline (dvc.yaml, written by tools/dvc_stages.py). Not when DVC itself
    runs the command (it records its own lock), on a dry run, in another environment than the
    default (DVC tracks data/, conf/micro writes data/micro/), or when nodes were filtered.
    """

    def __init__(self) -> None:
        self._enabled = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._root = Path(context.project_path)
        self._enabled = (not context.project_params.runtime.launcher.dry_run
                         and context.env in (None, "local", "base")
                         and "DVC_STAGE" not in os.environ
                         and (self._root / ".dvc").is_dir() and (self._root / "dvc.yaml").exists())

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if not self._enabled or any(run_params.get(key) for key in _NODE_FILTERS):
            return
        import yaml


        names = run_params.get("pipeline_names") or ["__default__"]
        ran = [n for name in names for n in (CHAIN_PIPELINES if name == "__default__" else [name])]
        known = (yaml.safe_load((self._root / "dvc.yaml").read_text()) or {}).get("stages", {})
        stages = [name for name in ran if name in known]
        if not stages:
            return
        dvc = Path(sys.executable).parent / "dvc"
        result = subprocess.run([str(dvc), "commit", "--force", "--quiet", *stages],
                                cwd=self._root, capture_output=True, text=True)
        if result.returncode:
            log.warning("dvc.lock not updated (`dvc commit %s` failed): %s", " ".join(stages),
                        (result.stderr or result.stdout).strip()[-500:])
        else:
            log.info("dvc.lock records %s: `dvc status` is clean for them", ", ".join(stages))


# A run restricted to some nodes did not make the whole stage, and a run with `--params`
# did not compute what the parameter files (which dvc.lock records) say.
_NODE_FILTERS = ("tags", "node_names", "from_nodes", "to_nodes", "from_inputs", "to_outputs",
                 "namespaces", "only_missing_outputs", "runtime_params", "extra_params")


class TrackingHook(MlflowHook):
    """kedro-mlflow's hook, plus lineage: commit, run name, the tree of instance runs.

    Registered instead of kedro-mlflow's own (settings.DISABLE_HOOKS_FOR_PLUGINS).
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        super().after_context_created(context)
        self._project_path = str(context.project_path)
        self._project = context.project_params
        self._logged_tables: set[str] = set()

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
        # Two runs of one pipeline differ by what they ran (a sweep: its variants, sizes and
        # seeds) and by their configuration, named by its digest (also the tag
        # `sail.config_digest`), so a sweep's run is told from another's in the runs list.
        what = (sweep_description(project.scaling) if names == ["scaling"] and project.scaling
                else f"seed {project.runtime.seed}")
        config = identity.payload_digest(project.model_dump(mode="json"), length=6)
        name = f"{described} · {what} · {preset}" + (
            f" · {env}" if env not in ("local", "base") else "") + f" · config {config}"
        mlflow.set_tags({"mlflow.runName": name, "sail.config_digest": config, "runner": lineage.describe(
            run_params.get("runner")), "sail.dry_run": str(project.runtime.launcher.dry_run
                                                           ).lower(),
                         **lineage.git_state(self._project_path)})
        lineage.mark_model_training(run.info.experiment_id)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                        is_async: bool) -> None:
        # kedro-mlflow flattens dict parameters into one MLflow param per key; it would log a
        # model as its repr. Hand it the plain values.
        plain = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v
                 for k, v in inputs.items()}
        super().before_node_run(node, catalog, plain, is_async)
        lineage.current_namespace.set(node.namespace)
        if getattr(self, "_is_mlflow_enabled", False):
            # The tables the run read, as dataset inputs of the Kedro run itself (each stage's
            # own run logs the ones it trained on).
            tables = {v for v in inputs.values() if isinstance(v, str) and v.endswith(".parquet")
                      and v not in self._logged_tables}
            self._logged_tables |= tables
            for table in sorted(tables):
                lineage.log_table_inputs({"input": table})
        if node.namespace and getattr(self, "_is_mlflow_enabled", False):
            # The instance's own run gets its parameters without the namespace, so runs of
            # different variants compare key by key in the MLflow UI.
            prefix = f"params:{node.namespace}."
            lineage.log_params({k.removeprefix(prefix): v for k, v in plain.items()
                                if k.startswith(prefix)})

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


class PointProgressHook:
    """A sweep's points (its nodes tagged `scaling_point`): a line as each ends, with the time
    left, and the counts on the Kedro run's MLflow run (`engine.progress`)."""

    TAG = "scaling_point"

    def __init__(self) -> None:
        self._progress: PointProgress | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        total = sum(1 for node in pipeline.nodes if self.TAG in node.tags)
        self._progress = PointProgress("scaling", total) if total > 1 else None

    def _ours(self, node: Any) -> PointProgress | None:
        return self._progress if self.TAG in node.tags else None

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                        is_async: bool) -> None:
        progress = self._ours(node)
        if progress is None:
            return
        if progress.done == 0 and progress.running == 0:  # the Kedro run exists by now
            import mlflow

            active = mlflow.active_run()
            progress.run_id = active.info.run_id if active is not None else None
        progress.start(node.namespace)

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                       outputs: dict[str, Any], is_async: bool) -> None:
        progress = self._ours(node)
        result = next(iter(outputs.values()), None) if progress is not None else None
        if progress is None or not isinstance(result, dict):
            return
        progress.record(_point_label(result, node.namespace), result)

    @hook_impl
    def on_node_error(self, error: Exception, node: Any, catalog: Any,
                      inputs: dict[str, Any], is_async: bool) -> None:
        progress = self._ours(node)
        if progress is not None:
            progress.finish(node.namespace, None, error=f"{type(error).__name__}: {error}")


class SharedInputsHook:
    """A sweep reads its shared inputs once: each input of two or more point nodes (the pool,
    the curation manifest with its images) is kept in memory from its first load until its
    last reader has run and the runner releases it (`glue.io.LoadedOnce`)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        from collections import Counter

        readers = Counter(name for node in pipeline.nodes if PointProgressHook.TAG in node.tags
                          for name in node.inputs if not name.startswith("params:"))
        quiet = logging.getLogger("kedro.io")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # it warns "Replacing dataset" for each
        try:
            for name, count in readers.items():
                if count > 1 and name in catalog and not isinstance(catalog.get(name),
                                                                    LoadedOnce):
                    catalog[name] = LoadedOnce(catalog.get(name))
        finally:
            quiet.setLevel(level)


def _point_label(result: dict[str, Any], namespace: str) -> str:
    """The point's name as its MLflow run has it; a failed point's record names only its
    namespace."""
    if {"variant", "n", "seed"} <= set(result):
        return Point(result["variant"], result["n"], result["seed"]).label
    return namespace


class CurveLinksHook:
    """A sweep's `kedro run` ends with the links to its curves in MLflow: the last lines it
    prints, after every other hook's (`trylast`)."""

    @hook_impl(trylast=True)
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        print_links()
