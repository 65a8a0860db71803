"""The pipelines: `data`, `pretrain`, `sft`, `evaluation`; `__default__` runs them in order."""

from kedro.pipeline import Pipeline

from sail_pipeline.pipelines import data, evaluation, pretrain, sft


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "data": data.pipeline.create_pipeline(),
        "pretrain": pretrain.pipeline.create_pipeline(),
        "sft": sft.pipeline.create_pipeline(),
        "evaluation": evaluation.pipeline.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
