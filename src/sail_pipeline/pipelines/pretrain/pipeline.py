"""`kedro run --pipelines=pretrain`: the backbones, then Pretrain-Alignment and -Advance."""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.pretrain import nodes
from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe
from sail_pipeline.schema import get_stage


def _backbone_node(stage: str):
    table = get_stage(stage).table
    return node(getattr(nodes, f"pretrain_{stage}"),
                [f"{table}_train", f"{table}_eval", "tokenizer", f"params:pretrain.{stage}",
                 "params:pretrain.preset", "params:runtime", f"{stage}_workdir"],
                f"{stage}_model", name=f"pretrain_{stage}", tags=["pretrain", "backbone"])


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([_backbone_node("llm"), _backbone_node("vision")]
                    ) + recipe().only_nodes_with_tags("pretrain")
