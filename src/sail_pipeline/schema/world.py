"""`data.world`: everything that determines the generated world; same params => same bytes.

Plain data and checks that need no drawing. Whether the shapes and words fit the image is
checked by `sail_pipeline.world.config.check_feasible` (it measures fonts), which
`generate_world` and the run's start both call.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from sail_pipeline.schema import palette, vocab
from sail_pipeline.schema.base import StrictModel

_WORD_RE = re.compile(r"^[a-z]+$")


def _unique_nonempty(field: str, values: list[str]) -> list[str]:
    if not values:
        raise ValueError(f"{field} must not be empty")
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"{field} contains duplicates: {duplicates}")
    return values


class WorldParams(StrictModel):
    """Everything that determines the generated world; same params => same bytes."""

    image_size: int = Field(64, ge=32, description="Square image side in pixels.")
    shape_kinds: list[str] = Field(default_factory=lambda: list(vocab.SHAPE_KINDS))
    colours: list[str] = Field(default_factory=lambda: list(palette.DEFAULT_COLOURS))
    min_objects: int = Field(1, ge=1)
    max_objects: int = Field(3, ge=1)
    radius_min: int = Field(10, ge=3, description="Pixels at image_size.")
    radius_max: int = Field(14, ge=3, description="Pixels at image_size.")
    text_probability: float = Field(0.3, ge=0.0, le=1.0)
    ocr_words: list[str] = Field(default_factory=lambda: list(vocab.DEFAULT_OCR_WORDS))
    alt_text_noise: float = Field(0.3, ge=0.0, le=1.0)
    alt_text_incomplete: float = Field(0.5, ge=0.0, le=1.0)
    n_train: int = Field(4000, ge=0)
    n_benchmark: int = Field(400, ge=0)
    seed: int = Field(0, ge=0)

    @field_validator("shape_kinds")
    @classmethod
    def _known_kinds(cls, v: list[str]) -> list[str]:
        known = vocab.SHAPE_KINDS
        unknown = [k for k in v if k not in known]
        if unknown:
            raise ValueError(f"shape_kinds has unknown kinds {unknown}; known: {list(known)}")
        return _unique_nonempty("shape_kinds", v)

    @field_validator("colours")
    @classmethod
    def _known_colours(cls, v: list[str]) -> list[str]:
        known = palette.COLOURS
        unknown = [c for c in v if c not in known]
        if unknown:
            raise ValueError(f"colours has unknown colours {unknown}; known: {list(known)}")
        return _unique_nonempty("colours", v)

    @field_validator("ocr_words")
    @classmethod
    def _plain_words(cls, v: list[str]) -> list[str]:
        malformed = [w for w in v if not _WORD_RE.match(w)]
        if malformed:
            raise ValueError(f"ocr_words must be lowercase ascii words, got {malformed}")
        # An OCR word must never be another question type's answer, or an OCR answer could be
        # "right" for the wrong reason.
        answers = {*palette.COLOURS, *vocab.SHAPE_KINDS, *map(vocab.plural, vocab.SHAPE_KINDS),
                   *vocab.NUMBER_WORDS, *vocab.POSITIONS}
        reserved = [w for w in v if w in answers]
        if reserved:
            raise ValueError(
                f"ocr_words {reserved} collide with colour/shape/number/position answers"
            )
        return _unique_nonempty("ocr_words", v)

    @field_validator("max_objects")
    @classmethod
    def _countable(cls, v: int) -> int:
        most = vocab.MAX_COUNT
        if v > most:
            raise ValueError(f"max_objects must be <= {most}, the largest count word")
        return v

    @model_validator(mode="after")
    def _ordered_ranges(self) -> WorldParams:
        if self.max_objects < self.min_objects:
            raise ValueError(
                f"max_objects={self.max_objects} must be >= min_objects={self.min_objects}"
            )
        if self.radius_max < self.radius_min:
            raise ValueError(
                f"radius_max={self.radius_max} must be >= radius_min={self.radius_min}"
            )
        return self
