"""`kedro run --pipelines=evaluation`: the recipe's evaluation node, on checkpoints on disk."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    # Imported here: the recipe template imports this package's nodes.
    from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe

    return recipe().only_nodes_with_tags("evaluation")
