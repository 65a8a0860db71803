"""Backbone nodes: the stand-in LLM and vision tower (or the user's own, from a path)."""

from __future__ import annotations

from typing import Any

from sail_pipeline.engine import stage as engine_stage
from sail_pipeline.schema import BackboneParams, RuntimeParams


def _backbone(stage: str, train: str, evaluation: str, tokenizer: str, backbone: BackboneParams,
              preset: str, runtime: RuntimeParams, workdir: str) -> dict[str, Any]:
    if backbone.source == "path":
        # A user's pretrained weights are loaded exactly like the ones made here.
        return engine_stage.from_path(str(backbone.path))
    assert backbone.train is not None  # checked by BackboneParams
    return engine_stage.train(stage, backbone.train, runtime, workdir, train, evaluation,
                               preset=preset, tokenizer_path=tokenizer)


def pretrain_llm(train: str, evaluation: str, tokenizer: str, backbone: BackboneParams,
                 preset: str, runtime: RuntimeParams, workdir: str) -> dict[str, Any]:
    return _backbone("llm", train, evaluation, tokenizer, backbone, preset, runtime, workdir)


def pretrain_vision(train: str, evaluation: str, tokenizer: str, backbone: BackboneParams,
                    preset: str, runtime: RuntimeParams, workdir: str) -> dict[str, Any]:
    return _backbone("vision", train, evaluation, tokenizer, backbone, preset, runtime, workdir)
