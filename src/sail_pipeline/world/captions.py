"""Complete, correct reference captions."""

from __future__ import annotations

from sail_pipeline.identity import stable_hash
from sail_pipeline.schema.palette import BACKGROUNDS, COLOURS
from sail_pipeline.schema.vocab import (
    NUMBER_WORDS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPE_KINDS,
    noun,
    number_word,
)
from sail_pipeline.world.scene import Scene

# Several phrasings keep the language model from memorising one sentence; no template starts
# with an attribute word, so attributes always appear in their canonical lowercase form.
_TEMPLATES: tuple[str, ...] = (
    "The image shows {count} {colour} {noun} {where} on a {background} background.",
    "There {be} {count} {colour} {noun} {where}, on a {background} background.",
    "In this picture, {count} {colour} {noun} {be} drawn {where} against a {background} "
    "background.",
    "A {background} background with {count} {colour} {noun} {where}.",
)
_SPREAD: tuple[str, ...] = ("spread across the image", "scattered across the image")


def location_phrase(scene: Scene) -> str:
    """Where the shapes are, in words."""
    if scene.position is not None:
        return POSITION_PHRASES[scene.position]
    return _SPREAD[stable_hash(scene.scene_id + "/spread") % len(_SPREAD)]


def detailed_caption(scene: Scene) -> str:
    """Count, colour, kind, location and text of a scene; phrasing fixed by its id."""
    template = _TEMPLATES[stable_hash(scene.scene_id) % len(_TEMPLATES)]
    caption = template.format(
        count=number_word(scene.count),
        colour=scene.colour,
        noun=noun(scene.kind, scene.count),
        where=location_phrase(scene),
        background=scene.background,
        be="is" if scene.count == 1 else "are",
    )
    if scene.text is not None:
        caption += f' The word "{scene.text}" is written at the bottom.'
    return caption


# Facts a caption can state, split as the caption benchmark reports them: what the objects
# are (kind, how many) and their attributes (colour, where, background, written word).
OBJECT_FACTS: tuple[str, ...] = ("kind", "count")
ATTRIBUTE_FACTS: tuple[str, ...] = ("colour", "position", "background", "text")


def caption_facts(scene: Scene) -> dict[str, str]:
    """The ground truth a complete caption states; position only for a one-shape scene."""
    facts = {"kind": scene.kind, "count": number_word(scene.count), "colour": scene.colour,
             "background": scene.background}
    if scene.position is not None:
        facts["position"] = scene.position
    if scene.text is not None:
        facts["text"] = scene.text
    return facts


def fact_vocabulary(ocr_words: list[str]) -> dict[str, list[str]]:
    """Every value a caption could name per fact, beyond this world's config too.

    The wider palette and all number words are included so that a caption naming a colour
    or count the scene does not have is caught as a wrong mention, not ignored.
    """
    return {
        "kind": list(SHAPE_KINDS),
        "count": list(NUMBER_WORDS[1:]),
        "colour": list(COLOURS),
        "position": list(POSITIONS),
        "background": list(BACKGROUNDS),
        "text": list(ocr_words),
    }
