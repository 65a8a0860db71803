"""Short-answer question/answer pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.questions import (
    ANSWER_INSTRUCTION,
    PARAPHRASES,
    answer_choices,
    applicable_types,
    canonical_answer,
)
from sail_pipeline.world.scene import Scene


@dataclass(frozen=True)
class VQA:
    question_type: str
    question: str
    answer: str
    choices: list[str]


def vqa_pairs(scene: Scene, rng: np.random.Generator, cfg: WorldParams | None = None) -> list[VQA]:
    """One question per applicable type, each in a randomly chosen paraphrase.

    ``cfg`` fixes the answer choices; without it the default config's choices are used.
    """
    cfg = cfg if cfg is not None else WorldParams()
    pairs = []
    for question_type in applicable_types(scene):
        options = PARAPHRASES[question_type]
        question = options[int(rng.integers(len(options)))]
        pairs.append(
            VQA(
                question_type=question_type,
                question=f"{question} {ANSWER_INSTRUCTION}",
                answer=canonical_answer(scene, question_type),
                choices=answer_choices(question_type, cfg),
            )
        )
    return pairs
