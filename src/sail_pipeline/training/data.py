"""Training tables -> encoded samples -> batches, with a data position that survives resume.

Every row of a table ends kept or rejected with a reason; rejections are counted and saved
next to the run's outputs instead of being dropped silently.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sail_pipeline.modeling.processor import IGNORE_INDEX, ImageSettings, VLProcessor, normalise


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
    """Batch k is a pure function of (seed, k): resuming at step k needs nothing else."""

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


class ConversationData:
    """Image + chat conversations, labels only on the assistant spans of the template."""

    def __init__(self, table: pd.DataFrame, processor: VLProcessor, max_seq_len: int) -> None:
        self.processor = processor
        self.rejections = Rejections()
        self.mask_mismatches = 0
        self.samples: list[tuple[list[int], list[int], bytes | None]] = []
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
                self.samples.append((encoded.input_ids, encoded.labels, image_bytes))

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        picked = [self.samples[i] for i in indices]
        batch = pad_batch([p[0] for p in picked], [p[1] for p in picked], pad_id)
        images = [decode_png(p[2]) for p in picked if p[2] is not None]
        if images:
            batch["pixel_values"] = torch.cat([self.processor.pixel_values(im) for im in images])
        return batch


def pad_batch(ids: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    label_tensor = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (seq, lab) in enumerate(zip(ids, labels, strict=True)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        label_tensor[i, : len(lab)] = torch.tensor(lab)
        attention[i, : len(seq)] = 1
    return {"input_ids": input_ids, "labels": label_tensor, "attention_mask": attention}


class TextData:
    """Plain text for pretraining the stand-in LLM; every token is supervised."""

    def __init__(self, table: pd.DataFrame, tokenizer, max_seq_len: int) -> None:
        self.rejections = Rejections()
        self.samples: list[list[int]] = []
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
            self.samples.append(ids)

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        ids = [self.samples[i] for i in indices]
        return pad_batch(ids, ids, pad_id)


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
