"""`kedro run --pipelines=sft`: the recipe's curriculum, Knowledge -> Instruction -> Preference."""

from kedro.pipeline import Pipeline

from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe


def create_pipeline(**kwargs) -> Pipeline:
    return recipe().only_nodes_with_tags("sft")
