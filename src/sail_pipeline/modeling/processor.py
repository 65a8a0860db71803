"""Images to tiles to pixel values, and conversations to token ids with supervised spans.

Tiling follows InternVL's `dynamic_preprocess`: pick the tile grid whose aspect ratio is
closest to the image's (at most `max_tiles` tiles), resize, cut, and add a thumbnail when
there is more than one tile. Every tile becomes `tokens_per_tile` image tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast

from sail_pipeline.modeling.tokenizer import (
    IMAGE_PLACEHOLDER,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    load_tokenizer,
)

PROCESSOR_FILE = "sail_processor.json"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ImageSettings:
    tile_size: int = 448
    max_tiles: int = 12
    use_thumbnail: bool = True
    tokens_per_tile: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def tile_grid(width: int, height: int, max_tiles: int, tile_size: int) -> tuple[int, int]:
    """The (columns, rows) grid with at most `max_tiles` tiles closest to the image's aspect."""
    aspect = width / height
    candidates = sorted(
        {(c, r) for n in range(1, max_tiles + 1) for c in range(1, n + 1) for r in range(1, n + 1)
         if c * r <= max_tiles},
        key=lambda cr: cr[0] * cr[1],
    )
    best, best_diff = (1, 1), float("inf")
    area = width * height
    for cols, rows in candidates:
        diff = abs(aspect - cols / rows)
        # On a tie InternVL prefers the larger grid when the image has the pixels to fill it.
        if diff < best_diff or (diff == best_diff and area > 0.5 * cols * rows * tile_size * tile_size):
            best, best_diff = (cols, rows), diff
    return best


def split_into_tiles(image: Image.Image, settings: ImageSettings) -> list[Image.Image]:
    image = image.convert("RGB")
    size = settings.tile_size
    cols, rows = tile_grid(image.width, image.height, settings.max_tiles, size)
    if cols * rows == 1:
        return [image.resize((size, size), Image.BICUBIC)]
    resized = image.resize((size * cols, size * rows), Image.BICUBIC)
    tiles = [
        resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
        for r in range(rows)
        for c in range(cols)
    ]
    if settings.use_thumbnail:
        tiles.append(image.resize((size, size), Image.BICUBIC))
    return tiles


def normalise(tiles: list[Image.Image], settings: ImageSettings) -> torch.Tensor:
    array = np.stack([np.asarray(t, dtype=np.float32) / 255.0 for t in tiles])
    array = (array - np.asarray(settings.mean, dtype=np.float32)) / np.asarray(
        settings.std, dtype=np.float32
    )
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


@dataclass
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    supervised_tokens: int
    expected_supervised_tokens: int

    @property
    def mask_mismatch(self) -> bool:
        return self.supervised_tokens != self.expected_supervised_tokens


@dataclass
class VLProcessor:
    """Pairs a tokenizer with image settings; saved next to every checkpoint."""

    tokenizer: PreTrainedTokenizerFast
    image: ImageSettings = field(default_factory=ImageSettings)
    system_prompt: str | None = None

    def image_token_string(self, n_tiles: int) -> str:
        return IMG_START + IMG_CONTEXT * (self.image.tokens_per_tile * n_tiles) + IMG_END

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        return normalise(split_into_tiles(image, self.image), self.image)

    def _expand(self, messages: list[dict], n_tiles: int) -> list[dict]:
        expanded = []
        if self.system_prompt:
            expanded.append({"role": "system", "content": self.system_prompt})
        for message in messages:
            content = message["content"]
            if IMAGE_PLACEHOLDER in content:
                content = content.replace(IMAGE_PLACEHOLDER, self.image_token_string(n_tiles), 1)
            expanded.append({"role": message["role"], "content": content})
        return expanded

    def num_tiles(self, width: int, height: int) -> int:
        cols, rows = tile_grid(width, height, self.image.max_tiles, self.image.tile_size)
        extra = 1 if cols * rows > 1 and self.image.use_thumbnail else 0
        return cols * rows + extra

    def encode(self, messages: list[dict], n_tiles: int = 0) -> EncodedSample:
        """Token ids plus labels that supervise exactly the assistant spans of the template.

        `n_tiles` is the image's tile count (0: no image); pixels are produced separately so
        that a dataset can tokenise everything up front and decode images per batch.
        """
        rendered = self.tokenizer.apply_chat_template(
            self._expand(messages, n_tiles),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        input_ids = list(rendered["input_ids"])
        mask = list(rendered["assistant_masks"])
        labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(input_ids, mask, strict=True)]
        # What the spans should hold: each assistant reply tokenised on its own plus <|im_end|>.
        # A disagreement means the template and the tokenizer split text differently.
        expected = sum(
            len(self.tokenizer.encode(m["content"] + self.tokenizer.eos_token))
            for m in messages
            if m["role"] == "assistant"
        )
        return EncodedSample(input_ids, labels, sum(mask), expected)

    def prompt_ids(self, prompt: str, image: Image.Image | None) -> tuple[list[int], torch.Tensor | None]:
        """Ids of a single user turn followed by the assistant header, for generation."""
        pixel_values = self.pixel_values(image) if image is not None else None
        if image is not None and IMAGE_PLACEHOLDER not in prompt:
            prompt = f"{IMAGE_PLACEHOLDER}\n{prompt}"
        n_tiles = 0 if pixel_values is None else pixel_values.shape[0]
        messages = self._expand([{"role": "user", "content": prompt}], n_tiles)
        ids = self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        return list(ids), pixel_values

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(path))
        payload = {"image": asdict(self.image), "system_prompt": self.system_prompt}
        (path / PROCESSOR_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> VLProcessor:
        path = Path(path)
        settings_file = path / PROCESSOR_FILE
        if not settings_file.exists():
            raise FileNotFoundError(f"{settings_file} not found: not a sail_pipeline checkpoint")
        payload = json.loads(settings_file.read_text())
        image = payload["image"]
        image["mean"], image["std"] = tuple(image["mean"]), tuple(image["std"])
        return cls(load_tokenizer(path), ImageSettings(**image), payload.get("system_prompt"))
