from sail_pipeline.pipelines.captioning import pipeline  # noqa: F401
