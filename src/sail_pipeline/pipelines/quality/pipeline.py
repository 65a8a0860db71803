"""`kedro run --pipelines=quality` (after `curation` and `captioning`).

caption sources -> stand-in CLIP -> signals (cached by id, caption and version) -> statistics
report and filter -> the captions Pretrain-Alignment and -Advance train on.
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.quality import nodes
from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.caption_candidates,
             ["curation_manifest", "recaptions", "reference_captions", "params:quality"],
             "caption_candidates", name="caption_candidates"),
        node(nodes.train_clip,
             ["reference_captions", "curation_manifest", "tokenizer", "params:quality.clip",
              "params:runtime.seed", "quality_clip_workdir"],
             "quality_clip_model", name="train_quality_clip"),
        node(nodes.quality_signals,
             ["caption_candidates", "curation_manifest", "world_scenes", "quality_clip_model",
              "captioner_model", "tokenizer", "params:quality", "params:curation",
              "quality_signal_cache"],
             "quality_signals", name="quality_signals"),
        node(nodes.quality_report, ["quality_signals", "caption_candidates"],
             ["quality_statistics_table", "quality_statistics", "quality_histograms"],
             name="quality_report"),
        node(nodes.filter_captions, ["quality_signals", "params:quality.filter"],
             ["quality_decisions", "quality_rejected", "quality_funnel", "quality_funnel_chart"],
             name="filter_captions"),
        node(nodes.pretrain_tables,
             ["quality_decisions", "caption_candidates", "curation_manifest",
              "advance_ocr_train", "params:pretrain.caption_source",
              "params:data.stage_sizes", "params:runtime.seed"],
             ["alignment_train", "advance_train"], name="pretrain_tables"),
    ])
