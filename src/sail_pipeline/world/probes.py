"""Benchmark-format questions: POPE yes/no existence, MME yes/no pairs, MMBench letter choice.

The short-answer questions (`vqa.py`) ask for a word; these ask the same facts in the formats
public VLM benchmarks use, so the world's suite measures what POPE, MME and MMBench measure.
Training scenes get them too, as real SFT mixes carry yes/no and lettered multiple choice.

Every probe names a ``group_id``: the two questions of an MME pair share one, as do the
rotations of one MMBench question on the benchmark split (CircularEval), so scoring can
require a whole group right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sail_pipeline.schema.vocab import POSITION_PHRASES
from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.questions import (
    PARAPHRASES,
    answer_choices,
    applicable_types,
    canonical_answer,
)
from sail_pipeline.world.scene import Scene

PROBE_TYPES: tuple[str, ...] = ("pope", "mme", "mmbench")
YES, NO = "yes", "no"
# MME's four perception categories that this world can pose; "existence" is POPE's job here.
MME_CATEGORIES: tuple[str, ...] = ("count", "colour", "position", "ocr")
LETTERS = "ABCD"

# The instructions are the ones LLaVA-1.5 trains and evaluates with for these benchmarks.
YES_NO_INSTRUCTION = "Answer the question using a single word or phrase."
MME_INSTRUCTION = "Please answer yes or no."
LETTER_INSTRUCTION = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class Probe:
    question_type: str  # pope | mme | mmbench
    category: str  # what is probed: "object" for POPE, the attribute for MME and MMBench
    group: str  # suffix shared by a group's members (pair / rotations)
    question: str
    answer: str  # yes | no | a letter
    choices: list[str]  # yes/no, or the options in the order shown


def _other(rng: np.random.Generator, options: list[str], actual: str) -> str:
    others = [o for o in options if o != actual]
    return others[int(rng.integers(len(others)))]


def pope_pair(scene: Scene, rng: np.random.Generator, cfg: WorldParams) -> list[Probe]:
    """A present object (yes) and an absent one (no).

    Objects are coloured shapes. The absent one changes exactly one of kind or colour, so
    it shares an attribute with what is drawn: POPE's "adversarial" setting, where the
    absent object co-occurs with present ones.
    """
    if len(cfg.shape_kinds) == 1 and len(cfg.colours) == 1:
        return []  # every object of this world is present in every scene
    negative_changes_kind = len(cfg.shape_kinds) > 1 and (
        len(cfg.colours) == 1 or bool(rng.integers(2))
    )
    if negative_changes_kind:
        absent = (scene.colour, _other(rng, cfg.shape_kinds, scene.kind))
    else:
        absent = (_other(rng, cfg.colours, scene.colour), scene.kind)
    probes = []
    for (colour, kind), answer in (((scene.colour, scene.kind), YES), (absent, NO)):
        probes.append(Probe("pope", "object", f"pope-{answer}",
                            f"Is there a {colour} {kind} in the image? {YES_NO_INSTRUCTION}",
                            answer, [YES, NO]))
    return probes


def _mme_question(category: str, value: str) -> str:
    if category == "count":
        return ("Is there exactly one shape in the image?" if value == "one"
                else f"Are there exactly {value} shapes in the image?")
    if category == "colour":
        return f"Are the shapes in the image {value}?"
    if category == "position":
        return f"Is the shape {POSITION_PHRASES[value]}?"
    return f'Is the word "{value}" written in the image?'


def _askable(scene: Scene, cfg: WorldParams, among: tuple[str, ...] | None = None
             ) -> list[str]:
    """Question types this scene has an answer for, with at least one wrong value to offer."""
    return [t for t in applicable_types(scene)
            if (among is None or t in among) and len(answer_choices(t, cfg)) > 1]


def mme_pair(scene: Scene, rng: np.random.Generator, cfg: WorldParams) -> list[Probe]:
    """MME's unit: one category, the same question once true (yes) and once false (no)."""
    categories = _askable(scene, cfg, MME_CATEGORIES)
    if not categories:
        return []
    category = categories[int(rng.integers(len(categories)))]
    truth = canonical_answer(scene, category)
    false = _other(rng, answer_choices(category, cfg), truth)
    return [Probe("mme", category, f"mme-{category}",
                  f"{_mme_question(category, value)} {MME_INSTRUCTION}", answer, [YES, NO])
            for value, answer in ((truth, YES), (false, NO))]


def _lettered(stem: str, options: list[str]) -> str:
    lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)]
    return "\n".join([stem, *lines, LETTER_INSTRUCTION])


def mmbench_question(scene: Scene, rng: np.random.Generator, cfg: WorldParams,
                     circular: bool) -> list[Probe]:
    """One multiple-choice question with up to four options, answered by letter.

    With ``circular`` the options are also shown rotated, once per option, as MMBench's
    CircularEval does: a model that always answers "A" is then right on one rotation only.
    """
    types = _askable(scene, cfg)
    if not types:
        return []
    question_type = types[int(rng.integers(len(types)))]
    truth = canonical_answer(scene, question_type)
    distractors = [c for c in answer_choices(question_type, cfg) if c != truth]
    picked = rng.choice(len(distractors), size=min(len(LETTERS) - 1, len(distractors)),
                        replace=False)
    options = [truth, *(distractors[int(i)] for i in picked)]
    options = [options[int(i)] for i in rng.permutation(len(options))]
    paraphrases = PARAPHRASES[question_type]
    stem = paraphrases[int(rng.integers(len(paraphrases)))]
    rotations = range(len(options)) if circular else range(1)
    probes = []
    for shift in rotations:
        shown = options[shift:] + options[:shift]
        probes.append(Probe("mmbench", question_type, "mmbench", _lettered(stem, shown),
                            LETTERS[shown.index(truth)], shown))
    return probes


def probes_for(scene: Scene, rng: np.random.Generator, cfg: WorldParams,
               circular: bool) -> list[Probe]:
    """A POPE pair, an MME pair and an MMBench question (rotated when ``circular``)."""
    return [*pope_pair(scene, rng, cfg), *mme_pair(scene, rng, cfg),
            *mmbench_question(scene, rng, cfg, circular)]

