"""Web-style alt-text: short, often incomplete, sometimes wrong.

It plays the role of the noisy web captions that the SAIL-VL recipe recaptions, so its
noise must be real: a wrong alt-text always states a wrong attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from sail_pipeline.schema.vocab import noun, number_word, plural
from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.scene import Scene

T = TypeVar("T")

# Each template lists the attributes it states, so a corrupted attribute is always visible.
_COMPLETE: tuple[str, ...] = (
    "{count} {colour} {noun}",
    "stock photo of {count} {colour} {noun}",
    "{digit} {colour} {noun}",
    "picture with {count} {colour} {noun}",
    "{colour} {plural} x{digit}",
)
_INCOMPLETE: tuple[tuple[str, frozenset[str]], ...] = (
    ("image", frozenset()),
    ("photo", frozenset()),
    ("untitled", frozenset()),
    ("{colour} shapes", frozenset({"colour"})),
    ("clipart {colour}", frozenset({"colour"})),
    ("{plural}", frozenset({"kind"})),
    ("stock photo of {plural}", frozenset({"kind"})),
    ("{colour} {plural}", frozenset({"colour", "kind"})),
    ("{digit} {noun}", frozenset({"count", "kind"})),
)


def _other(rng: np.random.Generator, options: Sequence[T], actual: T) -> T:
    others = [o for o in options if o != actual]
    return others[int(rng.integers(len(others)))]


def _corruptible(cfg: WorldParams) -> list[str]:
    attributes = []
    if len(cfg.colours) > 1:
        attributes.append("colour")
    if len(cfg.shape_kinds) > 1:
        attributes.append("kind")
    if cfg.max_objects > cfg.min_objects:
        attributes.append("count")
    return attributes


def alt_text(scene: Scene, rng: np.random.Generator, cfg: WorldParams) -> str:
    """Alt-text for a scene; wrong with prob. alt_text_noise, short with alt_text_incomplete."""
    colour, kind, count = scene.colour, scene.kind, scene.count
    corrupted: str | None = None
    attributes = _corruptible(cfg)
    if attributes and rng.random() < cfg.alt_text_noise:
        corrupted = attributes[int(rng.integers(len(attributes)))]
        if corrupted == "colour":
            colour = _other(rng, cfg.colours, colour)
        elif corrupted == "kind":
            kind = _other(rng, cfg.shape_kinds, kind)
        else:
            count = _other(rng, range(cfg.min_objects, cfg.max_objects + 1), count)

    if rng.random() < cfg.alt_text_incomplete:
        pool = [t for t, stated in _INCOMPLETE if corrupted is None or corrupted in stated]
        template = pool[int(rng.integers(len(pool)))]
    else:
        template = _COMPLETE[int(rng.integers(len(_COMPLETE)))]
    text = template.format(
        count=number_word(count),
        digit=count,
        colour=colour,
        noun=noun(kind, count),
        plural=plural(kind),
    )
    if scene.text is not None and template in _COMPLETE and rng.random() < 0.5:
        text += f' with text "{scene.text}"'
    return text
