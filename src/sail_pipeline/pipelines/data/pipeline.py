from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.data import nodes
from sail_pipeline.recipe_data import TABLE_NAMES


def create_pipeline(**kwargs) -> Pipeline:
    table_outputs = {name: name for name in TABLE_NAMES}
    return Pipeline([
        node(nodes.make_world, "params:data", ["world_scenes", "world_vqa", "world_conversations", "world_probes"],
             name="make_world"),
        node(nodes.make_tokenizer,
             ["world_scenes", "world_vqa", "world_conversations", "world_probes", "params:data"],
             "tokenizer",
             name="make_tokenizer"),
        node(nodes.make_tables,
             ["world_scenes", "world_vqa", "world_conversations", "world_probes", "params:data",
              "params:runtime"],
             table_outputs, name="make_tables"),
    ])
