from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.captioning import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.reference_captions, ["curation_manifest", "params:captioning",
                                        "params:curation", "world_scenes"],
             ["reference_captions", "reference_caption_failures"],
             name="reference_captions"),
    ])
