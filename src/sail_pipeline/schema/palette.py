"""Fixed RGB values of object colours, backgrounds and text."""

from __future__ import annotations

RGB = tuple[int, int, int]

# Saturated, mutually distant colours; a tiny vision tower must separate them from a few
# pixels, so no two share a dominant channel pattern.
COLOURS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 140, 20),
    "pink": (240, 110, 170),
    "brown": (130, 80, 40),
    "cyan": (20, 190, 210),
}

DEFAULT_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")

# Light, nearly grey tones: far from every object colour even after noise is added.
BACKGROUNDS: dict[str, RGB] = {
    "white": (248, 248, 248),
    "light grey": (218, 218, 218),
    "beige": (238, 228, 204),
}

TEXT_RGB: RGB = (0, 0, 0)

# Amplitude of the per-pixel background noise; small enough that the background stays light.
BACKGROUND_NOISE = 6
