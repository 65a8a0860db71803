"""Pretrain nodes: stand-in backbones (or the user's), then Alignment and Advance."""

from __future__ import annotations

from typing import Any

from sail_pipeline.params import BackboneParams, PretrainParams
from sail_pipeline.pipelines import training_node

GROUP = "pretrain"


def _backbone(kind: str, name: str, settings: dict, runtime: dict, preset: str, train: str,
              evaluation: str, tokenizer: str) -> dict[str, Any]:
    backbone = BackboneParams.model_validate(settings)
    if backbone.source == "path":
        # A user's pretrained weights are loaded exactly like the ones made here.
        return {"hf_dir": backbone.path, "run_dir": None, "summary": {"source": "path"}}
    return training_node.train(kind, name, GROUP, backbone.train.model_dump(), runtime, train,
                               evaluation, preset=preset, tokenizer_path=tokenizer)


def pretrain_llm(train: str, evaluation: str, tokenizer: str, pretrain: dict,
                 runtime: dict) -> dict[str, Any]:
    return _backbone("lm", "llm", pretrain["llm"], runtime, pretrain.get("preset", "tiny"),
                     train, evaluation, tokenizer)


def pretrain_vision(train: str, evaluation: str, tokenizer: str, pretrain: dict,
                    runtime: dict) -> dict[str, Any]:
    return _backbone("vision", "vision", pretrain["vision"], runtime,
                     pretrain.get("preset", "tiny"), train, evaluation, tokenizer)


def train_alignment(train: str, evaluation: str, tokenizer: str, llm: dict, vision: dict,
                    pretrain: dict, runtime: dict) -> dict[str, Any]:
    params = PretrainParams.model_validate(pretrain)
    return training_node.train("vlm", "alignment", GROUP, pretrain["alignment"], runtime, train,
                               evaluation, preset=params.preset, tokenizer_path=tokenizer,
                               llm_path=llm["hf_dir"], vision_path=vision["hf_dir"])


def train_advance(train: str, evaluation: str, alignment: dict, pretrain: dict,
                  runtime: dict) -> dict[str, Any]:
    return training_node.train("vlm", "advance", GROUP, pretrain["advance"], runtime, train,
                               evaluation, init_from=alignment["hf_dir"])
