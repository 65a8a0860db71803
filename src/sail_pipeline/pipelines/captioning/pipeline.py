"""`kedro run --pipelines=captioning`, after `curation` and the stand-in backbones (`pretrain`).

reference captions -> captioner tables -> captioner -> recaption the pool, and the
captioner's held-out scores against the alt-text.
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.captioning import nodes
from sail_pipeline.schema import ProjectParams


def create_pipeline(project: ProjectParams | None = None, **kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.reference_captions,
             ["curation_manifest", "params:captioning.reference", "params:curation",
              "world_scenes", "reference_caption_shards"],
             ["reference_captions", "reference_caption_failures"], name="reference_captions"),
        node(nodes.make_captioner_tables,
             ["reference_captions", "curation_manifest", "params:captioning.recaption",
              "params:captioning.captioner", "params:runtime.seed"],
             ["captioner_train", "captioner_eval"], name="make_captioner_tables"),
        node(nodes.train_captioner,
             ["captioner_train", "captioner_eval", "tokenizer", "llm_model", "vision_model",
              "params:captioning.captioner", "params:pretrain.preset", "params:runtime",
              "captioner_workdir"],
             "captioner_model", name="train_captioner", tags=["training"]),
        node(nodes.recaption_pool,
             ["curation_manifest", "captioner_model", "params:captioning.recaption",
              "params:curation", "world_scenes", "recaption_shards"],
             ["recaptions", "recaption_failures"], name="recaption_pool"),
        node(nodes.score_heldout,
             ["world_scenes", "captioner_model", "params:captioning.recaption",
              "captioner_heldout_shards"],
             ["captioner_heldout_scores", "captioner_heldout_chart"], name="score_heldout"),
    ])
