"""Validated parameters of the generated world."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sail_pipeline.world.fonts import text_extent
from sail_pipeline.world.layout import MARGIN, grid_slots, shape_area, third_x_range
from sail_pipeline.world.palette import COLOURS, DEFAULT_COLOURS
from sail_pipeline.world.vocab import (
    DEFAULT_OCR_WORDS,
    MAX_COUNT,
    NUMBER_WORDS,
    POSITIONS,
    SHAPE_KINDS,
    plural,
)

# OCR words must never collide with another question type's answers, otherwise an OCR
# answer could be "right" for the wrong reason.
_RESERVED_WORDS = frozenset(
    [*COLOURS, *SHAPE_KINDS, *map(plural, SHAPE_KINDS), *NUMBER_WORDS, *POSITIONS]
)
_WORD_RE = re.compile(r"^[a-z]+$")


def _unique_nonempty(field: str, values: list[str]) -> list[str]:
    if not values:
        raise ValueError(f"{field} must not be empty")
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"{field} contains duplicates: {duplicates}")
    return values


class WorldConfig(BaseModel):
    """Everything that determines the generated world; same config => same bytes."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(64, ge=32, description="Square image side in pixels.")
    shape_kinds: list[str] = Field(default_factory=lambda: list(SHAPE_KINDS))
    colours: list[str] = Field(default_factory=lambda: list(DEFAULT_COLOURS))
    min_objects: int = Field(1, ge=1)
    max_objects: int = Field(3, ge=1, le=MAX_COUNT)
    radius_min: int = Field(10, ge=3, description="Pixels at image_size.")
    radius_max: int = Field(14, ge=3, description="Pixels at image_size.")
    text_probability: float = Field(0.3, ge=0.0, le=1.0)
    ocr_words: list[str] = Field(default_factory=lambda: list(DEFAULT_OCR_WORDS))
    alt_text_noise: float = Field(0.3, ge=0.0, le=1.0)
    alt_text_incomplete: float = Field(0.5, ge=0.0, le=1.0)
    n_train: int = Field(4000, ge=0)
    n_benchmark: int = Field(400, ge=0)
    seed: int = Field(0, ge=0)

    @field_validator("shape_kinds")
    @classmethod
    def _known_kinds(cls, v: list[str]) -> list[str]:
        unknown = [k for k in v if k not in SHAPE_KINDS]
        if unknown:
            raise ValueError(f"shape_kinds has unknown kinds {unknown}; known: {list(SHAPE_KINDS)}")
        return _unique_nonempty("shape_kinds", v)

    @field_validator("colours")
    @classmethod
    def _known_colours(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in COLOURS]
        if unknown:
            raise ValueError(f"colours has unknown colours {unknown}; known: {list(COLOURS)}")
        return _unique_nonempty("colours", v)

    @field_validator("ocr_words")
    @classmethod
    def _plain_words(cls, v: list[str]) -> list[str]:
        malformed = [w for w in v if not _WORD_RE.match(w)]
        if malformed:
            raise ValueError(f"ocr_words must be lowercase ascii words, got {malformed}")
        reserved = [w for w in v if w in _RESERVED_WORDS]
        if reserved:
            raise ValueError(
                f"ocr_words {reserved} collide with colour/shape/number/position answers"
            )
        return _unique_nonempty("ocr_words", v)

    @model_validator(mode="after")
    def _scene_fits(self) -> WorldConfig:
        size = self.image_size
        if self.max_objects < self.min_objects:
            raise ValueError(
                f"max_objects={self.max_objects} must be >= min_objects={self.min_objects}"
            )
        if self.radius_max < self.radius_min:
            raise ValueError(
                f"radius_max={self.radius_max} must be >= radius_min={self.radius_min}"
            )
        may_have_text = self.text_probability > 0
        area = shape_area(size, may_have_text)
        y_lo, y_hi = area.centre_range_y(self.radius_max)
        if y_lo > y_hi:
            raise ValueError(
                f"radius_max={self.radius_max} is too large for image_size={size}: a shape "
                f"must fit in the {area.bottom - area.top + 1} px high drawing area"
            )
        # A single shape must be placeable in each third, or position answers become skewed.
        for position in POSITIONS:
            lo, hi = third_x_range(position, size, area, self.radius_max)
            if lo > hi:
                raise ValueError(
                    f"radius_max={self.radius_max} is too large for image_size={size}: a shape "
                    f"cannot sit clearly in the {position} third of the image"
                )
        capacity = len(grid_slots(area, self.radius_min))
        if capacity < self.max_objects:
            raise ValueError(
                f"max_objects={self.max_objects} shapes of radius_min={self.radius_min} do not "
                f"fit in a {size} px image (room for {capacity})"
            )
        for word in self.ocr_words:
            left, _, right, _ = text_extent(word, size)
            if right - left > size - 2 * MARGIN:
                raise ValueError(f"ocr_words entry {word!r} is too wide for image_size={size}")
        return self
