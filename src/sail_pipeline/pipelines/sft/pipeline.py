from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.sft import nodes

CURRICULUM = (("knowledge", "advance"), ("instruction", "knowledge"), ("preference", "instruction"))


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(getattr(nodes, f"train_{stage}"),
             [f"{stage}_train", f"{stage}_eval", f"{previous}_model", "params:sft",
              "params:runtime"], f"{stage}_model", name=f"train_{stage}")
        for stage, previous in CURRICULUM
    ])
