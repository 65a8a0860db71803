from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.curation import nodes
from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.curate, ["params:curation", "world_scenes", "curation_workdir"],
             ["curation_manifest", "curation_quarantine", "curation_funnel",
              "curation_funnel_chart"],
             name="curate"),
    ])
