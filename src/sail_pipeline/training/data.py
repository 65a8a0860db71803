"""Training tables -> encoded samples -> batches, with a data position that survives resume.

Every row of a table ends kept or rejected with a reason; rejections are counted and saved
next to the run's outputs instead of being dropped silently.
"""

from __future__ import annotations

import io
import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sail_pipeline.modeling.processor import ImageSettings, VLProcessor, normalise
from sail_pipeline.training.packing import TokenSample, collate


def decode_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@dataclass
class Rejections:
    rows: list[dict] = field(default_factory=list)

    def add(self, sample_id: str, reason: str) -> None:
        self.rows.append({"id": sample_id, "reason": reason})

    def counts(self) -> dict[str, int]:
        return dict(Counter(r["reason"] for r in self.rows))

    def save(self, path: Path) -> None:
        pd.DataFrame(self.rows, columns=["id", "reason"]).to_parquet(path, index=False)


class StepBatches:
    """Image batches for the vision tower: batch k is a pure function of (seed, k)."""

    def __init__(self, n_samples: int, batch_size: int, seed: int) -> None:
        if n_samples == 0:
            raise ValueError("no training samples left after encoding")
        self.n, self.batch_size, self.seed = n_samples, batch_size, seed

    @lru_cache(maxsize=4)  # noqa: B019 - a handful of epochs, one instance per run
    def _epoch(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def indices(self, step: int) -> list[int]:
        start = step * self.batch_size
        return [int(self._epoch(p // self.n)[p % self.n])
                for p in range(start, start + self.batch_size)]


class TileCache:
    """Decoded image tiles by the image's bytes, least recently used out first, at most
    `budget` bytes of tensors (a real-size 448 px image is up to 17 MiB of tiles)."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self._tiles: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def get(self, image: bytes) -> torch.Tensor | None:
        tiles = self._tiles.get(image)
        if tiles is not None:
            self._tiles.move_to_end(image)
        return tiles

    def put(self, image: bytes, tiles: torch.Tensor) -> None:
        size = tiles.numel() * tiles.element_size()
        if size > self.budget:
            return
        while self.used + size > self.budget:
            _, dropped = self._tiles.popitem(last=False)
            self.used -= dropped.numel() * dropped.element_size()
        self._tiles[image] = tiles
        self.used += size


class ConversationData:
    """Image + chat conversations, labels only on the assistant spans of the template."""

    def __init__(self, table: pd.DataFrame, processor: VLProcessor, max_seq_len: int,
                 tile_cache_bytes: int = 512 * 2**20) -> None:
        self.processor = processor
        self._tiles = TileCache(tile_cache_bytes)
        self.rejections = Rejections()
        self.mask_mismatches = 0
        self.samples: list[TokenSample] = []
        for row in table.itertuples(index=False):
            image_bytes = row.image if isinstance(row.image, bytes | bytearray) else None
            try:
                messages = json.loads(row.messages)
            except (TypeError, ValueError):
                self.rejections.add(row.id, "messages_not_json")
                continue
            # Token ids only here; the image is decoded per batch, not held in memory.
            n_tiles = 0
            if image_bytes is not None:
                n_tiles = processor.num_tiles(*Image.open(io.BytesIO(image_bytes)).size)
            encoded = processor.encode(messages, n_tiles)
            if encoded.mask_mismatch:
                self.mask_mismatches += 1
                self.rejections.add(row.id, "mask_mismatch")
            elif encoded.supervised_tokens == 0:
                self.rejections.add(row.id, "no_assistant_tokens")
            elif len(encoded.input_ids) > max_seq_len:
                self.rejections.add(row.id, "longer_than_max_seq_len")
            else:
                self.samples.append(TokenSample(encoded.input_ids, encoded.labels, image_bytes,
                                                n_tiles))

    def __len__(self) -> int:
        return len(self.samples)

    def pixels(self, sample: TokenSample) -> torch.Tensor:
        """The sample's tiles, decoded at most once while they fit the tile cache.

        Several conversations share one image (a scene's questions), and every epoch sees
        each image again: decoding was 9 of 140 ms a step (benchmarks/profile_train_step.py).
        """
        assert sample.image is not None
        tiles = self._tiles.get(sample.image)
        if tiles is None:
            tiles = self.processor.pixel_values(decode_png(sample.image))
            self._tiles.put(sample.image, tiles)
        if tiles.shape[0] != sample.n_tiles:
            raise ValueError(f"image gave {tiles.shape[0]} tiles, {sample.n_tiles} were counted")
        return tiles

    def batch(self, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        """A padded batch of the given samples (evaluation), per-token loss weights."""
        picked = [self.samples[i] for i in indices]
        batch = collate([[s] for s in picked], pad_id, "token", packed=False)
        images = [self.pixels(s) for s in picked if s.image is not None]
        if images:
            batch["pixel_values"] = torch.cat(images)
        return batch


class TextData:
    """Plain text for pretraining the stand-in LLM; every token is supervised."""

    def __init__(self, table: pd.DataFrame, tokenizer, max_seq_len: int) -> None:
        self.rejections = Rejections()
        self.samples: list[TokenSample] = []
        self.truncated = 0
        for row in table.itertuples(index=False):
            text = row.text if isinstance(row.text, str) else ""
            if not text.strip():
                self.rejections.add(row.id, "empty_text")
                continue
            ids = tokenizer.encode(text + tokenizer.eos_token)
            if len(ids) > max_seq_len:
                self.truncated += 1
                ids = ids[:max_seq_len]
            self.samples.append(TokenSample(ids, ids))

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        return collate([[self.samples[i]] for i in indices], pad_id, "token", packed=False)


class AttributeData:
    """Images with integer attribute labels (columns `label_<name>`) for the vision tower."""

    def __init__(self, table: pd.DataFrame, settings: ImageSettings,
                 num_classes: dict[str, int] | None = None) -> None:
        self.settings = settings
        self.rejections = Rejections()
        self.label_names = [c.removeprefix("label_") for c in table.columns if c.startswith("label_")]
        if not self.label_names:
            raise ValueError("vision pretraining table has no label_<name> columns")
        self.num_classes = num_classes or {
            n: int(table[f"label_{n}"].max()) + 1 for n in self.label_names}
        self.images: list[bytes] = []
        labels = []
        for row in table.itertuples(index=False):
            if not isinstance(row.image, bytes | bytearray):
                self.rejections.add(row.id, "missing_image")
                continue
            self.images.append(row.image)
            labels.append([int(getattr(row, f"label_{n}")) for n in self.label_names])
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: list[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
        size = self.settings.tile_size
        tiles = [decode_png(self.images[i]).resize((size, size)) for i in indices]
        return {"pixel_values": normalise(tiles, self.settings),
                "labels": self.labels[indices]}
