"""Question types, their paraphrases and canonical one-word answers."""

from __future__ import annotations

from sail_pipeline.schema.vocab import POSITIONS, number_word
from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.scene import Scene

QUESTION_TYPES: tuple[str, ...] = ("count", "colour", "shape", "position", "ocr")

# Phrasings never reveal another answer (e.g. "the shapes" even for one shape, so a colour
# question does not leak the count).
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "count": (
        "How many shapes are in the image?",
        "How many objects can you see?",
        "What is the number of shapes in the picture?",
    ),
    "colour": (
        "What colour are the shapes in the image?",
        "Which colour do the objects have?",
        "What is the colour of the shapes?",
    ),
    "shape": (
        "What kind of shape is shown in the image?",
        "Which shape appears in the picture?",
        "What type of object is drawn?",
    ),
    "position": (
        "Where is the shape: left, center or right?",
        "Is the object on the left, in the center or on the right?",
        "In which third of the image is the shape?",
    ),
    "ocr": (
        "What word is written in the image?",
        "What does the text at the bottom say?",
        "Read the word in the picture.",
    ),
}

ANSWER_INSTRUCTION = "Answer with one word."


def applicable_types(scene: Scene) -> list[str]:
    """Question types that have an answer for this scene."""
    types = ["count", "colour", "shape"]
    if scene.position is not None:
        types.append("position")
    if scene.text is not None:
        types.append("ocr")
    return types


def canonical_answer(scene: Scene, question_type: str) -> str:
    if question_type == "count":
        return number_word(scene.count)
    if question_type == "colour":
        return scene.colour
    if question_type == "shape":
        return scene.kind
    if question_type == "position" and scene.position is not None:
        return scene.position
    if question_type == "ocr" and scene.text is not None:
        return scene.text
    raise ValueError(f"scene {scene.scene_id} has no answer for {question_type!r}")


def answer_choices(question_type: str, cfg: WorldParams) -> list[str]:
    """Every answer a question of this type can have under the config."""
    if question_type == "count":
        return [number_word(n) for n in range(cfg.min_objects, cfg.max_objects + 1)]
    if question_type == "colour":
        return list(cfg.colours)
    if question_type == "shape":
        return list(cfg.shape_kinds)
    if question_type == "position":
        return list(POSITIONS)
    if question_type == "ocr":
        return list(cfg.ocr_words)
    raise ValueError(f"unknown question type {question_type!r}")


def chance_levels(cfg: WorldParams) -> dict[str, float]:
    """Accuracy of uniform guessing among the choices, per question type."""
    return {t: 1.0 / len(answer_choices(t, cfg)) for t in QUESTION_TYPES}
