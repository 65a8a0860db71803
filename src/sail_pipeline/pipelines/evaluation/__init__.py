from sail_pipeline.pipelines.evaluation import pipeline  # noqa: F401
