"""The sweep: the pools, one namespaced node per point, and the fit over whatever finished.

Each point is its own namespace (`<variant>_n<N>_s<seed>`), so it runs alone with
`kedro run --pipelines=scaling --namespaces=<namespace>` and gets its own MLflow child run;
the fit (`--tags=scaling_fit`) loads every point's result that exists and names the rest.
"""

import warnings
from collections.abc import Sequence

from kedro.pipeline import Pipeline, node, pipeline

from sail_pipeline.experiments.scaling.plan import Point, plan_points
from sail_pipeline.pipelines.scaling import nodes
from sail_pipeline.schema import ProjectParams

# What every point's chain is made from: the pools, the images, the backbones and the shared
# tables.
CHAIN_INPUTS = ["scaling_pool", "curation_manifest", "tokenizer", "llm_model", "vision_model",
                "benchmark", "alignment_eval", "advance_eval", "scaling_sft_train",
                "knowledge_eval", "params:scaling", "params:pretrain.preset", "params:runtime"]
# What every point loads: those, the point store, and the prefixes the sweep's points share.
POINT_INPUTS = [*CHAIN_INPUTS, "scaling_store", "scaling_shared_prefixes"]


def _point(point: Point) -> Pipeline:
    """One point: its node under the point's namespace, sharing every input."""
    template = Pipeline([node(nodes.point_node(point), POINT_INPUTS, "scaling_point",
                              name="run_point", tags=["scaling", "scaling_point"])])
    return pipeline(template, namespace=point.namespace,
                    inputs={name for name in POINT_INPUTS if not name.startswith("params:")},
                    parameters={name for name in POINT_INPUTS if name.startswith("params:")})


def _on_ray(points: Sequence[Point]) -> Pipeline:
    """Every point in one node that runs each as a Ray task (`runtime.points.kind: ray`),
    writing the same per-point results as the per-point nodes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return Pipeline([node(nodes.points_node(list(points)), POINT_INPUTS,
                              [f"{point.namespace}.scaling_point" for point in points],
                              name="run_points", tags=["scaling", "scaling_points"])])


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    """The pools, one node per point of `project`'s sweep (or one node running them all on
    Ray), and the fit."""
    points = plan_points(project.scaling) if project is not None and \
        project.scaling is not None else []
    on_ray = project is not None and project.runtime.points.kind == "ray" and bool(points)
    return Pipeline([
        node(nodes.scaling_pools,
             ["caption_candidates", "quality_signals", "curation_manifest", "world_scenes",
              "params:scaling", "params:quality.filter", "params:curation"],
             ["scaling_pool", "scaling_pool_accounting"], name="scaling_pools",
             tags=["scaling", "scaling_pool"]),
        node(nodes.sft_table, ["knowledge_train", "params:scaling.sft_samples"],
             "scaling_sft_train", name="scaling_sft_table", tags=["scaling", "scaling_pool"]),
        node(nodes.prefixes_node(points), CHAIN_INPUTS, "scaling_shared_prefixes",
             name="scaling_prefixes", tags=["scaling", "scaling_pool"]),
        *([_on_ray(points)] if on_ray else [_point(point) for point in points]),
        _fit(points),
    ])


def _fit(points: Sequence[Point]):
    # The fit reads every point's namespaced result ("<namespace>.scaling_point") by name,
    # which Kedro warns about for a node outside the namespace; that is the intent here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return node(nodes.fit_node(list(points)),
                    ["params:scaling", "params:statistics", "params:pretrain.preset",
                     "benchmark", "scaling_pool_accounting",
                     "selection_schedule_points",
                     *(f"{point.namespace}.scaling_point" for point in points)],
                    ["scaling_points", "scaling_fits", "scaling_comparisons", "scaling_plots",
                     "scaling_reproduction", "scaling_metrics"],
                    name="fit_scaling", tags=["scaling", "scaling_fit"])
