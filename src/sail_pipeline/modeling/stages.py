"""The five stages of the SAIL-VL recipe: what trains, on which data, with what budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    trainable: tuple[str, ...]
    dataset: str
    description: str
    # Defaults for the embedded default; parameters_<pipeline>.yml overrides them.
    learning_rate: float
    steps: int


STAGES: dict[str, StageSpec] = {
    "alignment": StageSpec(
        "alignment", ("projector",), "alignment",
        "Pretrain-Alignment: projector only, recaptioned image-caption pairs", 2e-3, 150),
    "advance": StageSpec(
        "advance", ("vision", "projector"), "advance",
        "Pretrain-Advance: vision tower + projector, more captions + OCR", 1e-3, 150),
    "knowledge": StageSpec(
        "knowledge", ("vision", "projector", "llm"), "knowledge",
        "SFT-Knowledge: everything, broad basic instructions (largest set)", 1e-3, 300),
    "instruction": StageSpec(
        "instruction", ("vision", "projector", "llm"), "instruction",
        "SFT-Instruction: everything, curated multi-turn instructions", 5e-4, 150),
    "preference": StageSpec(
        "preference", ("vision", "projector", "llm"), "preference",
        "SFT-Preference: everything, the smallest, hardest set", 2e-4, 80),
    # Not a recipe stage: the SAIL-Captioner that writes the pool's captions for Alignment.
    "captioner": StageSpec(
        "captioner", ("vision", "projector", "llm"), "captioner",
        "SAIL-Captioner: everything, reference captions with caption and recaption prompts",
        1e-3, 150),
}
PRETRAIN_STAGES = ("alignment", "advance")
SFT_STAGES = ("knowledge", "instruction", "preference")


def get_stage(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {list(STAGES)}") from None
