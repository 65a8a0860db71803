"""`kedro run --pipelines=variants`: the recipe once per entry of `variants` in the parameters.

Each variant is the whole parameter tree with its overrides merged in (validated when the run
starts). Its instance of the recipe runs under the namespace of its name: its parameters are
`params:<name>.…`, its checkpoints and reports go to the `{namespace}.…` catalog entries, and
its stages log into one MLflow child run of the Kedro run. The data tables, tokenizer,
backbones and benchmark are shared.
"""

from kedro.pipeline import Pipeline, pipeline

from sail_pipeline.pipelines.recipe.pipeline import SHARED_INPUTS
from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe
from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    """One instance per variant of `project`, following that variant's own `sft.schedule`."""
    instances = Pipeline([])
    for name, tree in (project.variants if project is not None else {}).items():
        template = recipe(tree)
        shared = sorted(SHARED_INPUTS & template.inputs())
        instances += pipeline(template, namespace=name, inputs=shared)
    return instances
