"""Every quality signal of (id, caption source) rows, computed once per version and cached.

Signals come in groups, each with its own version (code, model weights, rubric) and cache
folder: text and image statistics, CLIP score, image-conditioned likelihood, judge scores.
Each group's batch function is a class, built once per worker, so the same code runs on the
`plain` or `ray` executor. Statistics are computed here and decisions taken later
(`quality.filter`), so a changed threshold recomputes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sail_pipeline.executors import iter_map_batches
from sail_pipeline.folder_lock import sole_writer
from sail_pipeline.quality import image as image_signals_module
from sail_pipeline.quality import text as text_signals_module
from sail_pipeline.quality.cache import KEY, SignalCache, caption_sha, version_folder
from sail_pipeline.schema import ExecutorParams

log = logging.getLogger(__name__)

TEXT_VERSION = "text-1"
IMAGE_VERSION = "image-1"
IMAGE_KEY = "image"  # image signals are per id, whatever the caption


def usable_text(caption: Any, max_chars: int) -> str | None:
    """The caption as text a model may read, or None (missing, empty, not UTF-8)."""
    text, error = text_signals_module.prepare(caption, max_chars)
    return text if text and text.strip() and error in (None, text_signals_module.TOO_LONG) \
        else None


class TextBatch:
    def __init__(self, tokenizer_dir: str | None, max_chars: int) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else None
        self.max_chars = max_chars

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return text_signals_module.text_signals(list(batch["caption"]), self.tokenizer,
                                                max_chars=self.max_chars)


class ImageBatch:
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return image_signals_module.image_signals(list(batch["image"]))


class ClipBatch:
    def __init__(self, clip_dir: str, batch_size: int, max_chars: int) -> None:
        from sail_pipeline.quality.clip import ClipScorer

        self.scorer = ClipScorer.load(clip_dir, batch_size=batch_size)
        self.max_chars = max_chars

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        captions = [usable_text(c, self.max_chars) for c in batch["caption"]]
        scores, reasons = self.scorer.score(list(batch["image"]), captions)
        return pd.DataFrame({"clip_score": scores, "clip_error": reasons})


class LikelihoodBatch:
    def __init__(self, model_dir: str, batch_size: int, max_caption_tokens: int,
                 max_chars: int) -> None:
        from sail_pipeline.quality.likelihood import CaptionLikelihood

        self.scorer = CaptionLikelihood(model_dir, batch_size=batch_size,
                                        max_caption_tokens=max_caption_tokens)
        self.max_chars = max_chars

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from sail_pipeline.captioning.backends import decode_image

        n = len(batch)
        loglik, gain = np.full(n, np.nan), np.full(n, np.nan)
        reasons: list[str | None] = [None] * n
        good, images, captions = [], [], []
        for i, (data, caption) in enumerate(zip(batch["image"], batch["caption"], strict=True)):
            text = usable_text(caption, self.max_chars)
            if text is None:
                reasons[i] = "missing_caption"
                continue
            image = decode_image(data) if isinstance(data, bytes | bytearray) else "missing_image"
            if isinstance(image, str):
                reasons[i] = image
                continue
            images.append(image)
            good.append(i)
            captions.append(text)
        if good:
            with_image, image_gain = self.scorer.image_gain(images, captions)
            loglik[good], gain[good] = with_image, image_gain
        return pd.DataFrame({"loglik_image": loglik, "image_gain": gain,
                             "likelihood_error": reasons})


class JudgeBatch:
    def __init__(self, params: Any, credentials: Mapping[str, Any] | None,
                 max_chars: int) -> None:
        from sail_pipeline.quality.judge import build_judge

        self.judge = build_judge(params, credentials)
        self.max_chars = max_chars

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from sail_pipeline.quality.judge import JudgeItem, failed

        items, positions = [], []
        outcomes: list[Any] = [None] * len(batch)
        for i, row in enumerate(batch.itertuples(index=False)):
            text = usable_text(row.caption, self.max_chars)
            if text is None:
                outcomes[i] = failed(row.id, "missing_caption")
                continue
            data = row.image if isinstance(row.image, bytes | bytearray) else b""
            items.append(JudgeItem(row.id, data, text, row.ground_truth))
            positions.append(i)
        for i, outcome in zip(positions, self.judge.judge(items) if items else [], strict=True):
            outcomes[i] = outcome
        return pd.DataFrame({
            "judge_vir": [np.nan if o.vir is None else float(o.vir) for o in outcomes],
            "judge_ita": [np.nan if o.ita is None else float(o.ita) for o in outcomes],
            "judge_error": [o.reason for o in outcomes],
        })


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """The executors hand back object columns with None for missing; a column of numbers
    becomes float with NaN again, the others stay as they are."""
    out = frame.copy()
    for column in out.columns:
        values = out[column].dropna()
        if len(values) == 0 and column.endswith("_error"):
            continue
        if all(isinstance(v, int | float | np.number) and not isinstance(v, bool)
               for v in values):
            out[column] = out[column].astype(float)
    return out


@dataclass
class SignalGroup:
    """One cached group: its batch function, what its values depend on, and its key."""

    name: str
    fn: type
    identity: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    per_image: bool = False
    batch_size: int | None = None


# A kill loses at most this much of a group's work: what is computed is cached as it comes.
FLUSH_ROWS, FLUSH_SECONDS = 4096, 60.0


def _compute_into(cache: SignalCache, todo: pd.DataFrame, group: SignalGroup,
                  executor: ExecutorParams) -> pd.DataFrame:
    """The group's values for `todo`, added to the cache every FLUSH_ROWS rows or
    FLUSH_SECONDS (the judge over an API can run for hours), so a re-run after a kill computes
    only what was not cached."""
    columns = ["id", "caption", "image", "ground_truth"]
    done, pending, written = 0, [], []
    last = time.monotonic()
    for frame in iter_map_batches(todo[columns].reset_index(drop=True), group.fn, executor,
                                  batch_size=group.batch_size,
                                  fn_constructor_kwargs=group.kwargs):
        frame = _numeric(frame.reset_index(drop=True))
        rows = todo.iloc[done:done + len(frame)]
        frame.insert(0, "caption_sha", rows["caption_sha"].to_numpy())
        frame.insert(0, "id", rows["id"].to_numpy())
        done += len(frame)
        pending.append(frame)
        if sum(len(f) for f in pending) >= FLUSH_ROWS or time.monotonic() - last > FLUSH_SECONDS:
            written.append(pd.concat(pending, ignore_index=True))
            cache.add(written[-1])
            pending, last = [], time.monotonic()
    if pending:
        written.append(pd.concat(pending, ignore_index=True))
        cache.add(written[-1])
    return _numeric(pd.concat(written, ignore_index=True))


def compute_signals(candidates: pd.DataFrame, groups: list[SignalGroup],
                    cache_root: str | Path, executor: ExecutorParams) -> pd.DataFrame:
    """`candidates` (id, source, caption, image, ground_truth) with every group's columns.

    Only keys missing from a group's cache folder are computed, then added to it.
    """
    table = candidates.reset_index(drop=True).copy()
    table["caption_sha"] = [caption_sha(c) for c in table["caption"]]
    out = table[["id", "source", "caption_sha"]].copy()
    for group in groups:
        keyed = table.assign(caption_sha=IMAGE_KEY) if group.per_image else table
        folder = version_folder(cache_root, group.name, group.identity)
        # Runs with other outputs share the cache: one computes, the other waits and reuses.
        with sole_writer(folder, f"quality signals {group.name}"):
            cache = SignalCache(folder)
            cached = cache.load()
            needed = keyed.drop_duplicates(KEY)
            known = set(zip(cached["id"], cached["caption_sha"], strict=True)) \
                if len(cached) else set()
            todo = needed[[key not in known for key in zip(needed["id"],
                                                           needed["caption_sha"],
                                                           strict=True)]]
            log.info("quality signals %s: %d keys, %d cached, computing %d (%s)", group.name,
                     len(needed), len(needed) - len(todo), len(todo), folder.name)
            if len(todo):
                computed = _compute_into(cache, todo, group, executor)
                cached = pd.concat([cached, computed], ignore_index=True) if len(cached) \
                    else computed
        values = _numeric(cached.drop_duplicates(KEY, keep="last"))
        lookup = keyed[KEY].merge(values, on=KEY, how="left")
        for column in values.columns:
            if column not in KEY:
                out[column] = lookup[column].to_numpy()
    return out
