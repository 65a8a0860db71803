"""`kedro run --pipelines=evaluation`: the recipe's evaluation node, on checkpoints on disk."""

from kedro.pipeline import Pipeline

from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    # Imported here: the recipe template imports this package's nodes.
    from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe

    return recipe(project).only_nodes_with_tags("evaluation")
