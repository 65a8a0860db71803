from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.pretrain import nodes


def create_pipeline(**kwargs) -> Pipeline:
    shared = ["params:pretrain", "params:runtime"]
    return Pipeline([
        node(nodes.pretrain_llm, ["lm_text_train", "lm_text_eval", "tokenizer", *shared],
             "llm_backbone", name="pretrain_llm"),
        node(nodes.pretrain_vision,
             ["vision_attributes_train", "vision_attributes_eval", "tokenizer", *shared],
             "vision_backbone", name="pretrain_vision"),
        node(nodes.train_alignment,
             ["alignment_train", "alignment_eval", "tokenizer", "llm_backbone",
              "vision_backbone", *shared], "alignment_model", name="train_alignment"),
        node(nodes.train_advance, ["advance_train", "advance_eval", "alignment_model", *shared],
             "advance_model", name="train_advance"),
    ])
