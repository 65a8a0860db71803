from sail_pipeline.pipelines.data import pipeline  # noqa: F401
