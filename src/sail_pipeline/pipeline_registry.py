"""The pipelines, found by `find_pipelines()`; `__default__` is the whole SAIL-VL chain:
data -> backbones -> curation -> captioning -> quality -> pretrain -> sft -> evaluation.

Pretrain-Alignment and -Advance train on the captions the quality filter kept
(`pretrain.caption_source`). `variants` holds one namespaced instance of the recipe per entry
of `variants` in the parameters of this run; `scaling` one per point of the sweep in
`scaling` (parameters_scaling.yml).
"""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from sail_pipeline.context import last_validated
from sail_pipeline.pipelines.scaling.pipeline import create_pipeline as scaling
from sail_pipeline.pipelines.variants.pipeline import create_pipeline as variants
from sail_pipeline.scaling.plan import plan_points

DEFAULT = ("data", "backbones", "curation", "captioning", "quality", "pretrain", "sft",
           "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    project = last_validated()
    pipelines["variants"] = variants(project.variants if project is not None else {})
    pipelines["scaling"] = scaling(plan_points(project.scaling) if project is not None
                                   and project.scaling is not None else ())
    if all(name in pipelines for name in DEFAULT):  # find_pipelines loads only what a run asks
        pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT), Pipeline([]))
    return pipelines
