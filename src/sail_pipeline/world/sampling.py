"""Drawing a scene's ground truth from a random generator."""

from __future__ import annotations

import numpy as np

from sail_pipeline.schema.palette import BACKGROUNDS
from sail_pipeline.schema.vocab import POSITIONS
from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.layout import Area, free_centres, grid_slots, shape_area, third_x_range
from sail_pipeline.world.scene import Scene, ShapeInstance

_LAYOUT_RESTARTS = 20


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _uniform(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _place_single(rng: np.random.Generator, cfg: WorldParams, area: Area) -> ShapeInstance:
    # Choosing the third first balances position answers; uniform x would favour "center".
    radius = _uniform(rng, cfg.radius_min, cfg.radius_max)
    x_lo, x_hi = third_x_range(_pick(rng, POSITIONS), cfg.image_size, area, radius)
    y_lo, y_hi = area.centre_range_y(radius)
    return ShapeInstance(_uniform(rng, x_lo, x_hi), _uniform(rng, y_lo, y_hi), radius)


def _try_layout(
    rng: np.random.Generator, cfg: WorldParams, area: Area, kind: str, count: int, radius_cap: int
) -> list[tuple[int, int, int]] | None:
    # Choosing uniformly among all free centres (not rejection sampling) keeps this fast and
    # only fails when earlier shapes really leave no room.
    placed: list[tuple[int, int, int]] = []
    for radius in map(int, rng.integers(cfg.radius_min, radius_cap + 1, size=count)):
        x_lo, x_hi = area.centre_range_x(radius)
        y_lo, y_hi = area.centre_range_y(radius)
        xs, ys = np.arange(x_lo, x_hi + 1), np.arange(y_lo, y_hi + 1)
        free = np.flatnonzero(free_centres(kind, xs, ys, radius, placed))
        if free.size == 0:
            return None
        row, col = divmod(int(free[int(rng.integers(free.size))]), xs.size)
        placed.append((int(xs[col]), int(ys[row]), radius))
    return placed


def _place_many(
    rng: np.random.Generator, cfg: WorldParams, area: Area, kind: str, count: int
) -> list[ShapeInstance]:
    # Three large shapes rarely fit above a text band, so later restarts lower the radius cap;
    # the second half of the restarts all use radius_min.
    shrink_steps = _LAYOUT_RESTARTS // 2
    span = cfg.radius_max - cfg.radius_min
    for attempt in range(_LAYOUT_RESTARTS):
        radius_cap = cfg.radius_max - (span * min(attempt, shrink_steps)) // shrink_steps
        placed = _try_layout(rng, cfg, area, kind, count, radius_cap)
        if placed is not None:
            return [ShapeInstance(*p) for p in placed]
    # Random placement can fail on crowded configs; the lattice always has room because
    # WorldParams checks its capacity, so generation never loops forever.
    slots = grid_slots(area, cfg.radius_min)
    chosen = rng.choice(len(slots), size=count, replace=False)
    return [ShapeInstance(*slots[int(i)], cfg.radius_min) for i in chosen]


def sample_scene(rng: np.random.Generator, cfg: WorldParams, scene_id: str) -> Scene:
    """Draw one scene's theme, text and non-overlapping shape layout."""
    kind = _pick(rng, cfg.shape_kinds)
    colour = _pick(rng, cfg.colours)
    background = _pick(rng, tuple(BACKGROUNDS))
    text = _pick(rng, cfg.ocr_words) if rng.random() < cfg.text_probability else None
    count = _uniform(rng, cfg.min_objects, cfg.max_objects)
    area = shape_area(cfg.image_size, text is not None)
    if count == 1:
        shapes = [_place_single(rng, cfg, area)]
    else:
        shapes = _place_many(rng, cfg, area, kind, count)
    return Scene(
        scene_id=scene_id,
        kind=kind,
        colour=colour,
        shapes=tuple(shapes),
        text=text,
        background=background,
        image_size=cfg.image_size,
    )
