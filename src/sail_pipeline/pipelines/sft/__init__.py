from sail_pipeline.pipelines.sft import pipeline  # noqa: F401
