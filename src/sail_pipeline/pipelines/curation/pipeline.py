from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.curation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.curate, ["params:curation", "world_scenes", "curation_workdir"],
             ["curation_manifest", "curation_quarantine", "curation_funnel",
              "curation_funnel_chart"],
             name="curate"),
    ])
