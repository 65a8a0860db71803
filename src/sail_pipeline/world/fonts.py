"""The one font used for OCR words."""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageFont

from sail_pipeline.world.layout import font_size

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=8)
def load_font(size: int) -> Font:
    """Pillow's bundled default font, scaled where this Pillow build can scale it."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        # Pillow < 10.1 or a build without FreeType only has the fixed ~11 px bitmap font.
        return ImageFont.load_default()


def text_extent(word: str, image_size: int) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of a word drawn at the origin."""
    box = load_font(font_size(image_size)).getbbox(word)
    return int(box[0]), int(box[1]), int(box[2]), int(box[3])
