"""The recipe template, built from the stage registry.

`kedro run --pipelines=recipe` runs it as it is; `pretrain`, `sft` and `evaluation` are its
tagged parts; `variants` instantiates it once per variant under a namespace.

`sft.schedule` decides the SFT part: `curriculum` trains the registry's SFT stages in order,
each on its own mixture; `all_in_one` trains the first SFT stage once on the union of the
mixtures, shuffled, with the stages' token budgets added, and the later stages pass its
checkpoint on untouched (so evaluation and reports keep their rows).
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.evaluation.nodes import evaluate_checkpoints
from sail_pipeline.pipelines.recipe.nodes import pass_through_node_function, stage_node_function
from sail_pipeline.recipe_data import ALL_IN_ONE_TABLE
from sail_pipeline.schema import ALL_IN_ONE, RECIPE, SFT_STAGES, ProjectParams, get_stage

# What an instance shares with the rest of the project instead of making its own: the data
# tables, the tokenizer, the backbones and the benchmark.
SHARED_INPUTS = frozenset(
    {"tokenizer", "llm_model", "vision_model", "benchmark"}
    | {f"{get_stage(s).table}_{split}" for s in RECIPE for split in ("train", "eval")}
    | {f"{ALL_IN_ONE_TABLE}_{split}" for split in ("train", "eval")}
)


def configured_schedule(project: ProjectParams | None) -> str:
    """The tree's `sft.schedule` (curriculum without validated parameters)."""
    return project.sft.schedule if project is not None and project.sft is not None \
        else "curriculum"


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


def _all_in_one_nodes() -> list:
    first, *later = SFT_STAGES
    nodes = [node(stage_node_function(first, all_in_one=True),
                  [f"{ALL_IN_ONE_TABLE}_train", f"{ALL_IN_ONE_TABLE}_eval",
                   f"{get_stage(first).starts_from}_model", "params:sft", "params:runtime",
                   f"{first}_workdir"],
                  f"{first}_model", name=f"train_{first}", tags=["sft", "training"])]
    for stage in later:
        nodes.append(node(pass_through_node_function(stage), f"{get_stage(stage).starts_from}_model",
                          f"{stage}_model", name=f"train_{stage}", tags=["sft"]))
    return nodes


def create_pipeline(project: ProjectParams | None = None, schedule: str | None = None,
                    **kwargs) -> Pipeline:
    """The recipe for `project`'s `sft.schedule` (or `schedule`, for a variant's own)."""
    schedule = schedule or configured_schedule(project)
    stages = [s for s in RECIPE if schedule != ALL_IN_ONE or s not in SFT_STAGES]
    return Pipeline([
        *(_stage_node(stage) for stage in stages),
        *(_all_in_one_nodes() if schedule == ALL_IN_ONE else ()),
        node(evaluate_checkpoints,
             ["benchmark", "params:evaluation", "evaluation_workdir",
              *(f"{stage}_model" for stage in RECIPE)],
             ["evaluation_scores", "evaluation_chart", "evaluation_report",
              "evaluation_metrics"],
             name="evaluate_checkpoints", tags=["evaluation"]),
    ])
