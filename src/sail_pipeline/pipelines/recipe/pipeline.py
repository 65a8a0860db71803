"""The recipe template, built from the stage registry.

`kedro run --pipelines=recipe` runs it as it is; `pretrain`, `sft` and `evaluation` are its
tagged parts; `variants` instantiates it once per variant under a namespace.
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.evaluation.nodes import evaluate_checkpoints
from sail_pipeline.pipelines.recipe.nodes import stage_node_function
from sail_pipeline.schema import RECIPE, get_stage

# What an instance shares with the rest of the project instead of making its own: the data
# tables, the tokenizer, the backbones and the benchmark.
SHARED_INPUTS = frozenset(
    {"tokenizer", "llm_model", "vision_model", "benchmark"}
    | {f"{get_stage(s).table}_{split}" for s in RECIPE for split in ("train", "eval")}
)


def _stage_node(stage: str):
    spec = get_stage(stage)
    data = [f"{spec.table}_train", f"{spec.table}_eval"]
    if spec.starts_from is None:
        start = ["tokenizer", "llm_model", "vision_model"]
        settings = [f"params:{spec.group}.{stage}", f"params:{spec.group}.preset"]
    else:
        start = [f"{spec.starts_from}_model"]
        settings = [f"params:{spec.group}.{stage}"]
    return node(stage_node_function(stage),
                [*data, *start, *settings, "params:runtime", f"{stage}_workdir"],
                f"{stage}_model", name=f"train_{stage}", tags=[spec.group, "training"])


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        *(_stage_node(stage) for stage in RECIPE),
        node(evaluate_checkpoints,
             ["benchmark", "params:evaluation", "evaluation_workdir",
              *(f"{stage}_model" for stage in RECIPE)],
             ["evaluation_scores", "evaluation_chart", "evaluation_report",
              "evaluation_metrics"],
             name="evaluate_checkpoints", tags=["evaluation"]),
    ])
