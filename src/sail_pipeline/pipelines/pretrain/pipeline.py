"""`kedro run --pipelines=pretrain`: Pretrain-Alignment and -Advance, on the quality-filtered
caption pool, from the backbones (`kedro run --pipelines=backbones`)."""

from kedro.pipeline import Pipeline

from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe


def create_pipeline(**kwargs) -> Pipeline:
    return recipe().only_nodes_with_tags("pretrain")
