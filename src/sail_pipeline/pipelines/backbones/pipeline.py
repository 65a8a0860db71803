"""`kedro run --pipelines=backbones`: the stand-in LLM and vision tower.

Their own pipeline (and DVC stage) because the captioner starts from them too: the chain is
data -> backbones -> curation -> captioning -> quality -> pretrain, with no cycle.
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.backbones import nodes
from sail_pipeline.schema import BACKBONES, ProjectParams, get_stage


def _backbone_node(stage: str):
    table = get_stage(stage).table
    return node(getattr(nodes, f"pretrain_{stage}"),
                [f"{table}_train", f"{table}_eval", "tokenizer", f"params:pretrain.{stage}",
                 "params:pretrain.preset", "params:runtime", f"{stage}_workdir"],
                f"{stage}_model", name=f"pretrain_{stage}", tags=["pretrain", "backbone", "training"])


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    return Pipeline([_backbone_node(stage) for stage in BACKBONES])
