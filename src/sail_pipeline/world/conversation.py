"""Multi-turn instruction conversations in chat-message format."""

from __future__ import annotations

import numpy as np

from sail_pipeline.schema.vocab import POSITION_PHRASES
from sail_pipeline.world.captions import detailed_caption
from sail_pipeline.world.questions import PARAPHRASES, applicable_types, canonical_answer
from sail_pipeline.world.scene import Scene

IMAGE_PLACEHOLDER = "<image>"

_DESCRIBE: tuple[str, ...] = (
    "Describe the image.",
    "What do you see in this picture?",
    "Give a detailed description of the image.",
)


def answer_sentence(scene: Scene, question_type: str) -> str:
    """A short full-sentence answer containing the canonical answer word."""
    word = canonical_answer(scene, question_type)
    single = scene.count == 1
    if question_type == "count":
        return f"There is {word} shape." if single else f"There are {word} shapes."
    if question_type == "colour":
        return f"The shape is {word}." if single else f"The shapes are {word}."
    if question_type == "shape":
        return f"The shape is a {word}." if single else f"Each shape is a {word}."
    if question_type == "position":
        return f"The shape is {POSITION_PHRASES[word]}."
    return f'The word is "{word}".'


def conversation(scene: Scene, rng: np.random.Generator) -> list[dict[str, str]]:
    """2-3 user/assistant turns: one description request mixed with distinct questions."""
    n_turns = int(rng.integers(2, 4))
    types = applicable_types(scene)
    asked = [types[int(i)] for i in rng.choice(len(types), size=n_turns - 1, replace=False)]
    describe_at = int(rng.integers(n_turns))
    messages: list[dict[str, str]] = []
    for turn in range(n_turns):
        if turn == describe_at:
            request = _DESCRIBE[int(rng.integers(len(_DESCRIBE)))]
            reply = detailed_caption(scene)
        else:
            question_type = asked.pop(0)
            options = PARAPHRASES[question_type]
            request = options[int(rng.integers(len(options)))]
            reply = answer_sentence(scene, question_type)
        if turn == 0:
            request = f"{IMAGE_PLACEHOLDER}\n{request}"
        messages.append({"role": "user", "content": request})
        messages.append({"role": "assistant", "content": reply})
    return messages
