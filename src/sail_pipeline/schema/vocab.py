"""Canonical words of the world: every caption, question and answer uses exactly these."""

from __future__ import annotations

SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle")

# Counts are written as words so that a count answer is a single token-like word.
NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)
MAX_COUNT = len(NUMBER_WORDS) - 1

POSITIONS: tuple[str, ...] = ("left", "center", "right")
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
}

DEFAULT_OCR_WORDS: tuple[str, ...] = ("cat", "sun", "box", "map", "pen", "cup", "key", "hat")


def number_word(n: int) -> str:
    """The canonical word for a count (``2 -> "two"``)."""
    if not 0 <= n <= MAX_COUNT:
        raise ValueError(f"no number word for {n}; counts must lie in 0..{MAX_COUNT}")
    return NUMBER_WORDS[n]


def plural(kind: str) -> str:
    """Plural of a shape kind; all kinds are regular nouns."""
    return f"{kind}s"


def noun(kind: str, count: int) -> str:
    """The kind in singular or plural as the count requires."""
    return kind if count == 1 else plural(kind)
