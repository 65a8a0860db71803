from sail_pipeline.pipelines.curation import pipeline  # noqa: F401
