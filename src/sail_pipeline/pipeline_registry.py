"""The pipelines: `data`, `pretrain`, `sft`, `evaluation`; `__default__` runs them in order.

`curation` and `captioning` run on their own, after it (`kedro run --pipelines=curation,captioning`):
no recipe stage reads the recaptions yet, so the default chain does not pay for them.
"""

from kedro.pipeline import Pipeline

from sail_pipeline.pipelines import captioning, curation, data, evaluation, pretrain, sft


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "data": data.pipeline.create_pipeline(),
        "pretrain": pretrain.pipeline.create_pipeline(),
        "sft": sft.pipeline.create_pipeline(),
        "evaluation": evaluation.pipeline.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["curation"] = curation.pipeline.create_pipeline()
    pipelines["captioning"] = captioning.pipeline.create_pipeline()
    return pipelines
