"""`kedro run --pipelines=selection`: the candidate sets the experiments draw from that the
`sft` pipeline does not make, then one node per experiment in `selection.experiments`
(`--tags=selection_quality` runs one; `selection_schedule` is curriculum vs all-in-one).

Every point is a short SFT from `advance_model`, stored by identity in `selection_store`, so
the base mixture that composition and incremental evaluation share trains once, and a
re-run trains only what changed.
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.experiments.selection.registry import SELECTION_EXPERIMENTS
from sail_pipeline.pipelines.selection.nodes import experiment_node
from sail_pipeline.pipelines.sft.pipeline import candidate_pipeline
from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    selection = project.selection if project is not None else None
    if selection is None:
        return Pipeline([])
    made_by_sft = project.sft.candidate_names() if project.sft is not None else []
    # `schedule` draws the curriculum's stages from the SFT mixtures' sets.
    names = list(dict.fromkeys([*selection.candidate_names(), *(
        made_by_sft if "schedule" in selection.experiments else [])]))
    # The sets the SFT mixtures use are the `sft` pipeline's (made by `make run`); this one
    # builds only the others (the planted harmful sets, by default), so each file has one maker.
    # Tagged with every experiment, so that `--tags=selection_quality` makes them too.
    tags = ["selection", *(f"selection_{e}" for e in selection.experiments)]
    return candidate_pipeline([n for n in names if n not in made_by_sft], tags) + Pipeline([
        node(experiment_node(experiment, names),
             ["params:selection", "params:sft", "params:runtime", "params:statistics",
              "advance_model", "benchmark",
              "knowledge_eval", "selection_store", *(f"sft_candidate_{n}" for n in names)],
             {name: name for name in SELECTION_EXPERIMENTS[experiment].outputs},
             name=f"selection_{experiment}", tags=["selection", f"selection_{experiment}"])
        for experiment in selection.experiments
    ])
