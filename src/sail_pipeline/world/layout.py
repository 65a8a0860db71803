"""Geometry shared by sampling, rendering and config validation.

Keeping it in one place guarantees that what the validator promises (a scene fits) is
exactly what the sampler and renderer do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MARGIN = 2  # free pixels between a shape's extent and the image edge
GAP = 2  # free pixels between two shapes so that they never touch visually
POSITION_MARGIN = 2  # keeps a single shape clearly inside its third of the image
SQUARE_HALF_SIDE_RATIO = 0.85


@dataclass(frozen=True)
class Area:
    """Inclusive pixel bounds that every shape's extent must stay inside."""

    left: int
    top: int
    right: int
    bottom: int

    def centre_range_x(self, radius: int) -> tuple[int, int]:
        return self.left + radius, self.right - radius

    def centre_range_y(self, radius: int) -> tuple[int, int]:
        return self.top + radius, self.bottom - radius


def band_height(image_size: int) -> int:
    """Height of the bottom band reserved for an OCR word."""
    return round(image_size * 17 / 64)


def font_size(image_size: int) -> int:
    """Font size that makes a word roughly 11-14 px tall on a 64 px image."""
    return max(8, round(image_size * 14 / 64))


def shape_area(image_size: int, has_text: bool) -> Area:
    bottom = image_size - 1 - MARGIN - (band_height(image_size) if has_text else 0)
    return Area(MARGIN, MARGIN, image_size - 1 - MARGIN, bottom)


def position_of(x: int, image_size: int) -> str:
    """Which third of the image width the x coordinate falls in."""
    if 3 * x < image_size:
        return "left"
    if 3 * x < 2 * image_size:
        return "center"
    return "right"


def third_x_range(position: str, image_size: int, area: Area, radius: int) -> tuple[int, int]:
    """Centre x values (inclusive) that put a shape of this radius clearly in one third."""
    lo, hi = area.centre_range_x(radius)
    first = math.ceil(image_size / 3)  # smallest x classified "center"
    second = math.ceil(2 * image_size / 3)  # smallest x classified "right"
    if position == "left":
        return lo, min(hi, first - 1 - POSITION_MARGIN)
    if position == "center":
        return max(lo, first + POSITION_MARGIN), min(hi, second - 1 - POSITION_MARGIN)
    if position == "right":
        return max(lo, second + POSITION_MARGIN), hi
    raise ValueError(f"unknown position {position!r}")


def square_half_side(radius: int) -> int:
    return round(radius * SQUARE_HALF_SIDE_RATIO)


def triangle_points(x: int, y: int, radius: int) -> list[tuple[int, int]]:
    """Upward equilateral triangle inscribed in the circle of the radius."""
    half_base = round(radius * math.sqrt(3) / 2)
    base_y = y + round(radius / 2)
    return [(x, y - radius), (x - half_base, base_y), (x + half_base, base_y)]


def clearance(kind: str, radius_a: int, radius_b: int) -> int:
    """Minimum centre offset that keeps two shapes GAP pixels apart.

    For squares it applies per axis (Chebyshev distance): a square's corners stick out of its
    circle, so circles apart would not imply squares apart. Otherwise it is Euclidean.
    """
    if kind == "square":
        return square_half_side(radius_a) + square_half_side(radius_b) + GAP
    return radius_a + radius_b + GAP


def free_centres(
    kind: str,
    xs: np.ndarray,
    ys: np.ndarray,
    radius: int,
    placed: list[tuple[int, int, int]],
) -> np.ndarray:
    """Mask over the (ys, xs) lattice where a new shape keeps clear of placed (x, y, r)."""
    free = np.ones((ys.size, xs.size), dtype=bool)
    for px, py, pr in placed:
        reach = clearance(kind, radius, pr)
        dx = np.abs(xs - px)[None, :]
        dy = np.abs(ys - py)[:, None]
        if kind == "square":
            free &= (dx >= reach) | (dy >= reach)
        else:
            free &= dx * dx + dy * dy >= reach * reach
    return free


def grid_slots(area: Area, radius: int) -> list[tuple[int, int]]:
    """Centres of a square lattice of mutually separated shapes of the radius."""
    step = 2 * radius + GAP
    x_lo, x_hi = area.centre_range_x(radius)
    y_lo, y_hi = area.centre_range_y(radius)
    return [(x, y) for y in range(y_lo, y_hi + 1, step) for x in range(x_lo, x_hi + 1, step)]
