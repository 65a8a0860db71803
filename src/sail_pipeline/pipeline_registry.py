"""The pipelines: one per package under `pipelines/`, each built from the run's validated
parameters (`glue.project.load_project`); `__default__` is the whole SAIL-VL chain:
data -> backbones -> curation -> captioning -> quality -> pretrain -> sft -> evaluation.

`variants` holds one namespaced instance of the recipe per entry of `variants`, `scaling` one
per point of the sweep, `selection` one node per experiment. On a dry run every pipeline's
non-training nodes are stood in for (`glue.dry_run`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kedro.framework.project import pipelines as kedro_pipelines
from kedro.pipeline import Pipeline

from sail_pipeline.glue import dry_run
from sail_pipeline.glue.project import load_project, session_arguments
from sail_pipeline.schema import CHAIN_PIPELINES, ProjectParams

PIPELINES = Path(__file__).parent / "pipelines"


def _requested() -> set[str] | None:
    # `kedro run --pipelines=a,b` builds only those (what Kedro's own find_pipelines does).
    names = getattr(kedro_pipelines, "_requested_pipelines", None)
    return None if names is None or "__default__" in names else set(names)


def register_pipelines(project: ProjectParams | None = None, env: str | None = None
                       ) -> dict[str, Pipeline]:
    """Every pipeline for `project` (default: this `kedro run`'s environment and `--params`)."""
    if project is None:
        env, runtime_params = session_arguments()
        project = load_project(env, runtime_params=runtime_params)
    requested = _requested()
    pipelines: dict[str, Pipeline] = {}
    for folder in sorted(PIPELINES.iterdir()):
        if not (folder / "pipeline.py").exists() or (
                requested is not None and folder.name not in requested):
            continue
        module = importlib.import_module(f"sail_pipeline.pipelines.{folder.name}")
        pipelines[folder.name] = module.create_pipeline(project)
    if project.runtime.launcher.dry_run:
        pipelines = {name: dry_run.stand_ins(pipeline, name, env)
                     for name, pipeline in pipelines.items()}
    if all(name in pipelines for name in CHAIN_PIPELINES):
        pipelines["__default__"] = sum((pipelines[n] for n in CHAIN_PIPELINES), Pipeline([]))
    return pipelines
