"""`kedro run --pipelines=pretrain`: Pretrain-Alignment and -Advance, on the quality-filtered
caption pool, from the backbones (`kedro run --pipelines=backbones`)."""

from kedro.pipeline import Pipeline

from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe
from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    return recipe(project).only_nodes_with_tags("pretrain")
