from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.data import nodes
from sail_pipeline.recipe_data import TABLE_NAMES
from sail_pipeline.schema import ProjectParams

WORLD_TABLES = ["world_scenes", "world_vqa", "world_conversations", "world_probes"]


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.make_world, "params:data.world", WORLD_TABLES, name="make_world"),
        node(nodes.make_tokenizer, [*WORLD_TABLES, "params:data.tokenizer"], "tokenizer",
             name="make_tokenizer"),
        node(nodes.make_tables, [*WORLD_TABLES, "params:data", "params:runtime.seed"],
             {name: name for name in TABLE_NAMES}, name="make_tables"),
    ])
