"""Whether a world's parameters can be drawn: shapes and words that fit the image."""

from __future__ import annotations

from sail_pipeline.schema.vocab import POSITIONS
from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.fonts import text_extent
from sail_pipeline.world.layout import MARGIN, grid_slots, shape_area, third_x_range

__all__ = ["WorldParams", "check_feasible"]


def check_feasible(world: WorldParams) -> None:
    """Fail, naming the parameter, when the shapes or OCR words cannot fit the image.

    Raises ValueError; called before a world is generated and when a run starts.
    """
    size = world.image_size
    may_have_text = world.text_probability > 0
    area = shape_area(size, may_have_text)
    y_lo, y_hi = area.centre_range_y(world.radius_max)
    if y_lo > y_hi:
        raise ValueError(
            f"radius_max={world.radius_max} is too large for image_size={size}: a shape "
            f"must fit in the {area.bottom - area.top + 1} px high drawing area"
        )
    # A single shape must be placeable in each third, or position answers become skewed.
    for position in POSITIONS:
        lo, hi = third_x_range(position, size, area, world.radius_max)
        if lo > hi:
            raise ValueError(
                f"radius_max={world.radius_max} is too large for image_size={size}: a shape "
                f"cannot sit clearly in the {position} third of the image"
            )
    capacity = len(grid_slots(area, world.radius_min))
    if capacity < world.max_objects:
        raise ValueError(
            f"max_objects={world.max_objects} shapes of radius_min={world.radius_min} do not "
            f"fit in a {size} px image (room for {capacity})"
        )
    for word in world.ocr_words:
        left, _, right, _ = text_extent(word, size)
        if right - left > size - 2 * MARGIN:
            raise ValueError(f"ocr_words entry {word!r} is too wide for image_size={size}")
