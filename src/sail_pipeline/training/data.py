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

from sail_pipeline.modeling.processor import EncodedSample, ImageSettings, VLProcessor, normalise
from sail_pipeline.text_limits import cannot_fit, longest_token_chars
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
        self._longest_token = longest_token_chars(processor.tokenizer.get_vocab())
        self._tiles = TileCache(tile_cache_bytes)
        self.rejections = Rejections()
        self.mask_mismatches = 0
        self.samples: list[TokenSample] = []
        # A conversation's encoding depends only on its text and its image's tile count. The
        # SFT mixtures repeat both (knowledge: 60000 rows, 6509 distinct conversations, one
        # image size), so each pair is encoded once: the knowledge stage read its table in
        # 16 s before, most of it re-encoding the same conversations.
        encodings: dict[tuple[str, int], EncodedSample | str] = {}
        tiles_of_size: dict[tuple[int, int], int] = {}
        for row in table.itertuples(index=False):
            image_bytes = row.image if isinstance(row.image, bytes | bytearray) else None
            # Token ids only here; the image is decoded per batch, not held in memory.
            n_tiles = 0
            if image_bytes is not None:
                size = Image.open(io.BytesIO(image_bytes)).size
                if size not in tiles_of_size:
                    tiles_of_size[size] = processor.num_tiles(*size)
                n_tiles = tiles_of_size[size]
            key = (row.messages if isinstance(row.messages, str) else repr(row.messages), n_tiles)
            if key not in encodings:
                encodings[key] = self._encode(row.messages, n_tiles, max_seq_len)
            encoded = encodings[key]
            if isinstance(encoded, str):
                self.mask_mismatches += encoded == "mask_mismatch"
                self.rejections.add(row.id, encoded)
            else:
                self.samples.append(TokenSample(encoded.input_ids, encoded.labels, image_bytes,
                                                n_tiles))

    def _encode(self, messages: object, n_tiles: int, max_seq_len: int) -> EncodedSample | str:
        """The encoding of one conversation, or the reason it is rejected."""
        try:
            parsed = json.loads(messages)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "messages_not_json"
        text_chars = sum(len(m["content"]) for m in parsed if isinstance(m, dict)
                         and isinstance(m.get("content"), str)) if isinstance(parsed, list) else 0
        if cannot_fit(text_chars, max_seq_len, self._longest_token):
            # Encoding a runaway row would cost memory and time; it cannot fit anyway.
            return "longer_than_max_seq_len"
        encoded = self.processor.encode(parsed, n_tiles)
        if encoded.mask_mismatch:
            return "mask_mismatch"
        if encoded.supervised_tokens == 0:
            return "no_assistant_tokens"
        if len(encoded.input_ids) > max_seq_len:
            return "longer_than_max_seq_len"
        return encoded

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
        texts = []
        # Text past what max_seq_len + 1 tokens can cover is cut before tokenizing: it would
        # be truncated anyway, and the tokenizer's memory grows with its input.
        max_chars = (max_seq_len + 1) * longest_token_chars(tokenizer.get_vocab())
        for row in table.itertuples(index=False):
            text = row.text if isinstance(row.text, str) else ""
            if not text.strip():
                self.rejections.add(row.id, "empty_text")
                continue
            texts.append(text[:max_chars] + tokenizer.eos_token)
        # Each distinct text is encoded once, in batches: the world's text repeats (93198
        # rows, 19790 distinct), and one tokenizer call per row took the stand-in LLM's
        # stage 8 s to read its table.
        distinct = list(dict.fromkeys(texts))
        encoded: dict[str, tuple[TokenSample, bool]] = {}
        for start in range(0, len(distinct), 4096):
            chunk = distinct[start:start + 4096]
            for text, ids in zip(chunk, tokenizer(chunk)["input_ids"], strict=True):
                kept = ids[:max_seq_len]
                encoded[text] = (TokenSample(kept, kept), len(ids) > max_seq_len)
        for text in texts:
            sample, truncated = encoded[text]
            self.truncated += truncated
            self.samples.append(sample)

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
