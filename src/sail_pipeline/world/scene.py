"""Ground truth of one scene."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sail_pipeline.world.layout import position_of

Signature = tuple[str, str, str | None, tuple[tuple[int, int, int], ...]]


@dataclass(frozen=True)
class ShapeInstance:
    """Centre and radius (pixels) of one shape; squares and triangles fit that circle."""

    x: int
    y: int
    radius: int


@dataclass(frozen=True)
class Scene:
    """All shapes of a scene share one kind and one colour, the scene's theme."""

    scene_id: str
    kind: str
    colour: str
    shapes: tuple[ShapeInstance, ...]
    text: str | None
    background: str
    # Needed to tell left/center/right apart; the spec'd fields alone do not carry it.
    image_size: int = 64

    @property
    def count(self) -> int:
        return len(self.shapes)

    @property
    def position(self) -> str | None:
        """Left, center or right third for a one-shape scene; undefined (None) otherwise."""
        if self.count != 1:
            return None
        return position_of(self.shapes[0].x, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "kind": self.kind,
            "colour": self.colour,
            "shapes": [{"x": s.x, "y": s.y, "radius": s.radius} for s in self.shapes],
            "text": self.text,
            "background": self.background,
            "image_size": self.image_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        return cls(
            scene_id=str(data["scene_id"]),
            kind=str(data["kind"]),
            colour=str(data["colour"]),
            shapes=tuple(
                ShapeInstance(int(s["x"]), int(s["y"]), int(s["radius"])) for s in data["shapes"]
            ),
            text=data["text"],
            background=str(data["background"]),
            image_size=int(data.get("image_size", 64)),
        )


def scene_signature(scene: Scene) -> Signature:
    """What makes two scenes the same picture content, independent of id and background."""
    shapes = tuple(sorted((s.x, s.y, s.radius) for s in scene.shapes))
    return scene.kind, scene.colour, scene.text, shapes
