"""The built-in candidate SFT sets, built from one split of the world.

Each builder turns the world's tables into conversation rows (`id`, `image`, `messages`); the
set's group, difficulty and (for planted harm) why it hurts are declared once, in
`sail_pipeline.schema.sft.CANDIDATES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline import recipe_data
from sail_pipeline.schema import CANDIDATES, WorldParams
from sail_pipeline.world import ANSWER_INSTRUCTION, NUMBER_WORDS, Scene

SHORT_ANSWER_TYPES = ["colour", "shape", "position"]


@dataclass(frozen=True)
class WorldSplit:
    """One split (train or benchmark) of the world's tables."""

    scenes: pd.DataFrame
    vqa: pd.DataFrame
    conversations: pd.DataFrame
    probes: pd.DataFrame
    world: WorldParams


Builder = Callable[[WorldSplit, int], pd.DataFrame]


def _general_vqa(split: WorldSplit, seed: int) -> pd.DataFrame:
    return recipe_data.vqa_table(split.scenes, split.vqa, SHORT_ANSWER_TYPES)


def _probes(split: WorldSplit, seed: int) -> pd.DataFrame:
    return recipe_data.vqa_table(split.scenes, split.probes)


def _ocr_vqa(split: WorldSplit, seed: int) -> pd.DataFrame:
    return recipe_data.vqa_table(split.scenes, split.vqa, ["ocr"])


def _truth(scenes: pd.DataFrame) -> list[Scene]:
    return [Scene.from_dict(json.loads(g)) for g in scenes["ground_truth"]]


_MORE = "If one more shape were added, how many shapes would there be?"
_FEWER = "If one shape were taken away, how many shapes would be left?"


def _counting(split: WorldSplit, seed: int) -> pd.DataFrame:
    """The count questions, plus one arithmetic question per scene (add or take away one)."""
    rng = np.random.default_rng(seed)
    ids, images, messages = [], [], []
    for row, scene in zip(split.scenes.itertuples(index=False), _truth(split.scenes),
                          strict=True):
        more = bool(rng.integers(2))
        total = scene.count + (1 if more else -1)
        if not 0 <= total < len(NUMBER_WORDS):
            more, total = not more, scene.count + (-1 if more else 1)
        question = f"{_MORE if more else _FEWER} {ANSWER_INSTRUCTION}"
        ids.append(f"{row.id}-arith")
        images.append(row.image)
        messages.append(recipe_data.turns(question, NUMBER_WORDS[total], with_image=True))
    arithmetic = recipe_data.rows(ids, images, messages)
    counts = recipe_data.vqa_table(split.scenes, split.vqa, ["count"])
    return pd.concat([counts, arithmetic], ignore_index=True)


def _text_only(split: WorldSplit, seed: int) -> pd.DataFrame:
    """One text question per scene, about the world's words: no image, no placeholder."""
    rng = np.random.default_rng(seed)
    world = split.world
    ids, messages = [], []
    for k in range(len(split.scenes)):
        kind = int(rng.integers(3))
        if kind == 0:
            n = int(rng.integers(len(NUMBER_WORDS) - 1))
            question, answer = f"Which number comes after {NUMBER_WORDS[n]}?", NUMBER_WORDS[n + 1]
        elif kind == 1:
            colour = world.colours[int(rng.integers(len(world.colours)))]
            question, answer = f"Is {colour} a colour or a shape?", "colour"
        else:
            shape = world.shape_kinds[int(rng.integers(len(world.shape_kinds)))]
            question, answer = f"Is a {shape} a colour or a shape?", "shape"
        ids.append(f"text-{k:06d}")
        messages.append(recipe_data.turns(f"{question} {ANSWER_INSTRUCTION}", answer,
                                          with_image=False))
    return recipe_data.rows(ids, [None] * len(ids), messages)


def _multi_turn(split: WorldSplit, seed: int) -> pd.DataFrame:
    return recipe_data.conversation_table(split.scenes, split.conversations)


def _detailed_captions(split: WorldSplit, seed: int) -> pd.DataFrame:
    return recipe_data.caption_table(split.scenes, "reference_caption", seed)


def _hard_multi_turn(split: WorldSplit, seed: int) -> pd.DataFrame:
    return recipe_data.hard_table(split.scenes, split.vqa, seed)


def _short_questions(split: WorldSplit) -> pd.DataFrame:
    return split.vqa[split.vqa["question_type"].isin([*SHORT_ANSWER_TYPES, "count"])]


def _wrong_answers(split: WorldSplit, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    picked = _short_questions(split)
    wrong = []
    for answer, choices in zip(picked["answer"], picked["choices"], strict=True):
        others = [c for c in json.loads(choices) if c != answer]
        wrong.append(others[int(rng.integers(len(others)))])
    return recipe_data.vqa_table(split.scenes, picked.assign(answer=wrong))


def _other_image(split: WorldSplit, seed: int) -> pd.DataFrame:
    """Each question and answer of a scene, shown with the image of a different scene."""
    rng = np.random.default_rng(seed)
    ids = split.scenes["id"].to_numpy()
    shift = rng.permutation(len(ids))
    # A cyclic shift along a random order moves every scene to another one.
    elsewhere = dict(zip(ids[shift], ids[np.roll(shift, 1)], strict=True))
    picked = _short_questions(split)
    return recipe_data.vqa_table(split.scenes,
                                 picked.assign(scene_id=picked["scene_id"].map(elsewhere)))


_RAMBLE = ("Looking carefully at everything in this picture, I would have to say that it is "
           "{answer}, as far as I can tell.")


def _wrong_format(split: WorldSplit, seed: int) -> pd.DataFrame:
    picked = _short_questions(split)
    return recipe_data.vqa_table(
        split.scenes, picked.assign(answer=[_RAMBLE.format(answer=a) for a in picked["answer"]]))


BUILDERS: dict[str, Builder] = {
    "general_vqa": _general_vqa,
    "probes": _probes,
    "text_only": _text_only,
    "counting": _counting,
    "ocr_vqa": _ocr_vqa,
    "multi_turn": _multi_turn,
    "detailed_captions": _detailed_captions,
    "hard_multi_turn": _hard_multi_turn,
    "wrong_answers": _wrong_answers,
    "other_image": _other_image,
    "wrong_format": _wrong_format,
}
if set(BUILDERS) != set(CANDIDATES):  # the schema's list and the builders must name the same sets
    raise ImportError(f"candidate builders {sorted(BUILDERS)} != declared {sorted(CANDIDATES)}")


def build_candidate(name: str, split: WorldSplit, seed: int) -> pd.DataFrame:
    """The built-in set `name` from one split, in a fixed order."""
    return BUILDERS[name](split, seed).reset_index(drop=True)
