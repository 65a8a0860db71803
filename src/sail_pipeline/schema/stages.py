"""The stage registry: every training run the project knows, listed once.

Everything else derives from it: the recipe's order, which stages start from which, the
pipelines' nodes, the checkpoints evaluation may score, the report's rows. Plain data, so the
parameter schema can check names against it without importing the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModuleKey = Literal["vision", "projector", "llm"]
ALL_MODULES: tuple[ModuleKey, ...] = ("vision", "projector", "llm")


@dataclass(frozen=True)
class StageSpec:
    name: str
    # pretrain / sft: the recipe's pipelines; backbone: the stand-ins; captioning: SAIL-Captioner
    group: Literal["backbone", "pretrain", "sft", "captioning"]
    kind: Literal["vlm", "lm", "vision"]
    # What trains (a VLM's module keys); a stage's `trainable` parameter overrides it.
    trainable: tuple[ModuleKey, ...]
    # The stage whose checkpoint this one starts from; None: built from the backbones.
    starts_from: str | None
    # The training table `<table>_train` / `<table>_eval` it reads.
    table: str
    # For the README's stage table: what the data is.
    data: str
    description: str


_STAGES = (
    StageSpec("llm", "backbone", "lm", ALL_MODULES, None, "lm_text", "world text",
              "stand-in LLM (SAIL-VL starts from Qwen2.5): next-token prediction on the world's "
              "text"),
    StageSpec("vision", "backbone", "vision", ALL_MODULES, None, "vision_attributes",
              "attribute labels",
              "stand-in ViT (SAIL-VL starts from InternViT): attribute classification"),
    StageSpec("alignment", "pretrain", "vlm", ("projector",), None, "alignment",
              "kept captions, half of the pool",
              "Pretrain-Alignment: projector only, image-caption pairs"),
    StageSpec("advance", "pretrain", "vlm", ("vision", "projector"), "alignment", "advance",
              "kept captions, other half (+ OCR if data.advance_ocr)",
              "Pretrain-Advance: vision tower + projector, more captions + OCR"),
    StageSpec("knowledge", "sft", "vlm", ALL_MODULES, "advance", "knowledge",
              "mixture: probes, one-word VQA, counting, captions, OCR, text",
              "SFT-Knowledge: everything, broad basic instructions (largest set)"),
    StageSpec("instruction", "sft", "vlm", ALL_MODULES, "knowledge", "instruction",
              "mixture: conversations, captions, short answers",
              "SFT-Instruction: everything, curated multi-turn instructions"),
    StageSpec("preference", "sft", "vlm", ALL_MODULES, "instruction", "preference",
              "mixture: all questions of a scene, probes, captions",
              "SFT-Preference: everything, the smallest, hardest set"),
    StageSpec("captioner", "captioning", "vlm", ALL_MODULES, None, "captioner",
              "reference captions, caption and recaption prompts",
              "SAIL-Captioner: everything, reference captions with caption and recaption prompts"),
)
STAGES: dict[str, StageSpec] = {stage.name: stage for stage in _STAGES}
BACKBONES = tuple(s.name for s in _STAGES if s.group == "backbone")
PRETRAIN_STAGES = tuple(s.name for s in _STAGES if s.group == "pretrain")
SFT_STAGES = tuple(s.name for s in _STAGES if s.group == "sft")
# The recipe, in order: what a namespaced instance trains and evaluation may score.
RECIPE = PRETRAIN_STAGES + SFT_STAGES


def get_stage(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {list(STAGES)}") from None

# The Kedro pipelines of the whole chain, in the order they run: plain `kedro run`.
CHAIN_PIPELINES = ("data", "backbones", "curation", "captioning", "quality", "pretrain", "sft",
                   "evaluation")
