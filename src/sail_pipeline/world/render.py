"""Turning a scene's ground truth into pixels and PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from sail_pipeline.schema.palette import BACKGROUND_NOISE, BACKGROUNDS, COLOURS, TEXT_RGB
from sail_pipeline.schema.world import WorldParams
from sail_pipeline.world.fonts import load_font
from sail_pipeline.world.layout import band_height, font_size, square_half_side, triangle_points
from sail_pipeline.world.scene import Scene
from sail_pipeline.world.seeding import render_rng


def _background(scene: Scene, seed: int) -> Image.Image:
    size = scene.image_size
    tone = np.asarray(BACKGROUNDS[scene.background], dtype=np.int16)
    # Mild noise keeps images from being flat; shapes are drawn over it with exact colours.
    # Luminance-only noise looks like paper grain and compresses to half the PNG size.
    noise = render_rng(seed, scene.scene_id).integers(
        -BACKGROUND_NOISE, BACKGROUND_NOISE + 1, size=(size, size, 1), dtype=np.int16
    )
    pixels = np.clip(tone + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _draw_text(draw: ImageDraw.ImageDraw, word: str, size: int) -> None:
    font = load_font(font_size(size))
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    band = band_height(size)
    x = (size - (right - left)) // 2 - left
    y = size - band + (band - (bottom - top)) // 2 - top
    draw.text((x, y), word, fill=TEXT_RGB, font=font)


def render(scene: Scene, cfg: WorldParams) -> Image.Image:
    """The RGB image of a scene; deterministic in (scene, cfg.seed)."""
    if scene.image_size != cfg.image_size:
        raise ValueError(
            f"scene {scene.scene_id} was sampled at image_size={scene.image_size}, "
            f"config has image_size={cfg.image_size}"
        )
    image = _background(scene, cfg.seed)
    draw = ImageDraw.Draw(image)
    fill = COLOURS[scene.colour]
    for s in scene.shapes:
        if scene.kind == "circle":
            draw.ellipse(
                (s.x - s.radius, s.y - s.radius, s.x + s.radius, s.y + s.radius), fill=fill
            )
        elif scene.kind == "square":
            h = square_half_side(s.radius)
            draw.rectangle((s.x - h, s.y - h, s.x + h, s.y + h), fill=fill)
        elif scene.kind == "triangle":
            draw.polygon(triangle_points(s.x, s.y, s.radius), fill=fill)
        else:
            raise ValueError(f"unknown shape kind {scene.kind!r}")
    if scene.text is not None:
        _draw_text(draw, scene.text, scene.image_size)
    return image


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1 is several times faster than the default on noisy images and barely larger.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_image(png_bytes: bytes) -> Image.Image:
    """PNG bytes from the scenes table back to an RGB image."""
    with Image.open(io.BytesIO(png_bytes)) as image:
        return image.convert("RGB")
