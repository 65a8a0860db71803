"""`kedro run --pipelines=sft`: the candidate SFT sets, each stage's mixture of them, and the
curriculum, Knowledge -> Instruction -> Preference (or one `all_in_one` stage)."""

from collections.abc import Iterable

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe
from sail_pipeline.pipelines.sft.nodes import MIXTURE_OUTPUTS, candidate_node, mix_node
from sail_pipeline.schema import CANDIDATES, HARMFUL_CANDIDATES, ProjectParams

WORLD_TABLES = ["world_scenes", "world_vqa", "world_conversations", "world_probes"]
# Where no parameters were validated (a test building the pipeline alone): every real set.
_FALLBACK = [name for name in CANDIDATES if name not in HARMFUL_CANDIDATES]


def candidate_pipeline(names: Iterable[str], tags: Iterable[str] = ()) -> Pipeline:
    """One node per candidate set: build it from the world (or read the user's file), validate
    every row, write `sft_candidate_<name>`, `sft_heldout_<name>` and `sft_rejected_<name>`.
    `tags` are added to the nodes' own (the experiments that read the sets)."""
    return Pipeline([
        node(candidate_node(name),
             [*WORLD_TABLES, "params:data.world", "tokenizer", "params:pretrain.preset",
              "params:sft", "params:runtime.seed"],
             [f"sft_candidate_{name}", f"sft_heldout_{name}", f"sft_rejected_{name}"],
             name=f"candidate_{name}", tags=["sft", "sft_data", *tags])
        for name in names
    ])


def mixture_pipeline(names: list[str]) -> Pipeline:
    return Pipeline([node(
        mix_node(names),
        ["params:sft", "params:runtime.seed", *(f"sft_candidate_{n}" for n in names),
         *(f"sft_heldout_{n}" for n in names), *(f"sft_rejected_{n}" for n in names)],
        {name: name for name in MIXTURE_OUTPUTS}, name="mix_sft_data",
        tags=["sft", "sft_data"])])


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    """Built for `project`'s candidate sets (every built-in real set without one)."""
    names = project.sft.candidate_names() if project is not None and project.sft is not None \
        else _FALLBACK
    return (candidate_pipeline(names) + mixture_pipeline(names)
            + recipe(project).only_nodes_with_tags("sft"))
