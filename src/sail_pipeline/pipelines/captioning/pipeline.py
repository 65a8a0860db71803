"""`kedro run --pipelines=captioning`, after `curation` and the stand-in backbones (`pretrain`).

reference captions -> captioner tables -> captioner -> recaption the pool, and the
captioner's held-out scores against the alt-text.
"""

from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.captioning import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.reference_captions, ["curation_manifest", "params:captioning",
                                        "params:curation", "world_scenes"],
             ["reference_captions", "reference_caption_failures"],
             name="reference_captions"),
        node(nodes.make_captioner_tables, ["reference_captions", "curation_manifest",
                                           "params:captioning", "params:runtime"],
             ["captioner_train", "captioner_eval"], name="make_captioner_tables"),
        node(nodes.train_captioner, ["captioner_train", "captioner_eval", "tokenizer",
                                     "llm_backbone", "vision_backbone", "params:captioning",
                                     "params:pretrain", "params:runtime"],
             "captioner_model", name="train_captioner"),
        node(nodes.recaption_pool, ["curation_manifest", "captioner_model", "params:captioning",
                                    "params:curation", "world_scenes"],
             ["recaptions", "recaption_failures"], name="recaption_pool"),
        node(nodes.score_heldout, ["world_scenes", "captioner_model", "params:captioning"],
             ["captioner_heldout_scores", "captioner_heldout_chart"], name="score_heldout"),
    ])
