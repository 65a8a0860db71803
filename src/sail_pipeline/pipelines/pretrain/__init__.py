from sail_pipeline.pipelines.pretrain import pipeline  # noqa: F401
