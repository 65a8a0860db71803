"""Recaption the curated pool, resumably: shards written as it goes, finished ids skipped.

    settings = RecaptionParams(backend="local", batch_size=32)
    backend = LocalBackend(load_generator(captioner_dir), settings.max_new_tokens)
    summary = recaption(manifest, backend, out_dir, settings)
    captions = read_captions(out_dir)  # one row per id

Kill it at any point and run it again: it reads the finished shards, skips the ids that have
a caption, retries the ids that only failed, and ends with exactly one caption per id. Every id
of the manifest ends as a caption or as a failure with a reason (`read_failures`). Only one run
may write to an `out_dir` at a time: a second one waits for it (`run_lock.sole_writer`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from tqdm import tqdm

from sail_pipeline.captioning.backends import (
    BackendFactory,
    CaptionBackend,
    CaptionItem,
    CaptionOutcome,
    build_backend,
    short_reason,
)
from sail_pipeline.captioning.shards import (
    next_shard_index,
    read_shards,
    remove_tmp_leftovers,
    write_shard,
)
from sail_pipeline.executors import import_ray, iter_map_batches
from sail_pipeline.folder_lock import sole_writer
from sail_pipeline.schema import (
    PromptKind,
    RecaptionParams,
)
from sail_pipeline.text_limits import ALT_TEXT_TRUNCATED, cap_chars

logger = logging.getLogger("sail_pipeline.captioning")
T = TypeVar("T")

def build_prompt(alt_text: object, settings: RecaptionParams
                 ) -> tuple[str, PromptKind, bool]:
    """The recaption prompt for an item with alt-text (when enabled), else the caption prompt;
    and whether the alt-text was cut to `settings.max_alt_text_chars` to fit in it.

    The alt-text is context, not the answer, so a long one is truncated rather than the item
    rejected: a 100 KB alt-text in a prompt once took a run's memory to 20 GB.
    """
    if settings.use_alt_text and isinstance(alt_text, str) and alt_text.strip():
        capped = cap_chars(alt_text.strip(), settings.max_alt_text_chars)
        return (settings.recaption_prompt.format(alt_text=capped.text), "recaption",
                capped.truncated)
    return settings.caption_prompt, "caption", False


def length_grouped(items: Sequence[T], length: Callable[[T], int], batch_size: int,
                   window: int) -> list[list[T]]:
    """Batches whose members have similar `length`, so left padding wastes little compute.

    Sorting only within windows of `window * batch_size` items (in input order) keeps memory
    and latency bounded and the result deterministic (a stable sort: ties keep input order).
    """
    span = window * batch_size
    batches: list[list[T]] = []
    for start in range(0, len(items), span):
        chunk = sorted(items[start:start + span], key=length)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return batches


@dataclass(frozen=True)
class RecaptionSummary:
    total: int  # ids in the manifest
    skipped: int  # already captioned by an earlier run
    captioned: int  # this run
    failed: int  # this run
    failed_by_reason: dict[str, int] = field(default_factory=dict)  # error text before ':'
    retried: int = 0  # ids that had only failed before and were tried again
    duplicates: int = 0  # extra caption rows found in the shards (only a broken writer)
    shards_written: int = 0  # caption and failure files
    seconds: float = 0.0
    # what was done to items that were captioned or failed all the same, by reason
    # (alt_text_truncated: the alt-text cut to fit the prompt)
    noted: dict[str, int] = field(default_factory=dict)

    @property
    def captions_per_s(self) -> float:
        return self.captioned / self.seconds if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """Flat names for `mlflow.log_metrics`."""
        flat = {f"recaption/{k}": float(getattr(self, k))
                for k in ("total", "skipped", "captioned", "failed", "retried", "duplicates",
                          "shards_written", "seconds", "captions_per_s")}
        flat.update({f"recaption/failed/{reason.replace(' ', '_')}": float(n)
                     for reason, n in self.failed_by_reason.items()})
        flat.update({f"recaption/noted/{note}": float(n) for note, n in self.noted.items()})
        return flat


def validate_manifest(manifest: pd.DataFrame, settings: RecaptionParams) -> None:
    """Caller bugs (not bad data) fail here, before any work, naming what is wrong."""
    required = ["id", "image"] + (["alt_text"] if settings.use_alt_text else [])
    missing = [c for c in required if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing} (has {list(manifest.columns)})")
    ids = manifest["id"]
    bad = [repr(v) for v in ids if not isinstance(v, str) or not v]
    if bad:
        raise ValueError(f"manifest ids must be non-empty strings; found {len(bad)} others, "
                         f"e.g. {bad[:5]}")
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"manifest has {len(duplicated)} duplicate ids, e.g. {duplicated[:5]}")


def _image_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes | bytearray | memoryview) and len(value):
        return bytes(value)
    return None


def _checked(outcome: CaptionOutcome) -> CaptionOutcome:
    # An empty caption is no caption: storing it would count the id as done forever.
    if outcome.caption is not None and outcome.caption.strip():
        return CaptionOutcome(outcome.id, outcome.caption.strip(), None)
    error = outcome.error or ("empty caption" if outcome.caption is not None
                              else "no caption and no error from the backend")
    return CaptionOutcome(outcome.id, None, error)


def _caption_batch(backend: CaptionBackend, batch: list[CaptionItem]) -> list[CaptionOutcome]:
    """The backend's outcomes, with an exception confined to the item that caused it."""
    try:
        outcomes = backend.caption(batch)
    except Exception as error:  # one poisoned item must not cost the run (or its batch)
        if len(batch) == 1:
            logger.warning("caption %s: %s", batch[0].id, short_reason("backend error", error))
            return [CaptionOutcome(batch[0].id, None, short_reason("backend error", error))]
        logger.warning("a batch of %d raised %s; captioning its items one by one",
                       len(batch), type(error).__name__)
        return [o for item in batch for o in _caption_batch(backend, [item])]
    if [o.id for o in outcomes] != [i.id for i in batch]:
        # A broken backend, not bad data: going on would attach captions to the wrong ids.
        raise RuntimeError(f"{type(backend).__name__}.caption returned outcomes for ids "
                           f"{[o.id for o in outcomes][:5]}... for items "
                           f"{[i.id for i in batch][:5]}...: must be one per item, in order")
    return [_checked(o) for o in outcomes]


class _CaptionWorker:
    """One backend batch per row (`ids`, `images`, `prompts`) → its outcomes, as lists.

    Built once per worker: in this process, or in each Ray actor, where a BackendFactory
    builds (loads) the backend there.
    """

    def __init__(self, backend: CaptionBackend | BackendFactory) -> None:
        self.backend = build_backend(backend)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        ids, captions, errors = [], [], []
        for row in batch.itertuples(index=False):
            items = [CaptionItem(*fields) for fields in zip(row.ids, row.images, row.prompts,
                                                           strict=True)]
            outcomes = _caption_batch(self.backend, items)
            ids.append([o.id for o in outcomes])
            captions.append([o.caption for o in outcomes])
            errors.append([o.error for o in outcomes])
        return pd.DataFrame({"ids": ids, "captions": captions, "errors": errors})


@dataclass
class _Shard:
    """One shard's work, planned before any captioning: its backend batches and what failed."""

    batches: list[list[CaptionItem]]
    kinds: dict[str, PromptKind]
    missing: list[dict[str, str]]
    truncated: int = 0  # items whose alt-text was cut to fit the prompt


def _plan(rows: list[dict[str, Any]], settings: RecaptionParams) -> _Shard:
    kinds: dict[str, PromptKind] = {}
    missing: list[dict[str, str]] = []
    items: list[CaptionItem] = []
    truncated = 0
    for row in rows:
        image = _image_bytes(row["image"])
        if image is None:  # the backend would crash on it; record it instead
            missing.append({"id": row["id"], "error": "missing image: no bytes"})
            continue
        prompt, kinds[row["id"]], cut = build_prompt(row.get("alt_text"), settings)
        truncated += cut
        items.append(CaptionItem(row["id"], image, prompt))
    batches = length_grouped(items, lambda item: len(item.prompt), settings.batch_size,
                             settings.length_group_window)
    return _Shard(batches, kinds, missing, truncated)


def _batch_table(shards: list[_Shard]) -> pd.DataFrame:
    batches = [batch for shard in shards for batch in shard.batches]
    return pd.DataFrame({"ids": [[i.id for i in b] for b in batches],
                         "images": [[i.image for i in b] for b in batches],
                         "prompts": [[i.prompt for i in b] for b in batches]})


def _reason_kind(error: str) -> str:
    return error.split(":", 1)[0].strip()


def recaption(manifest: pd.DataFrame, backend: CaptionBackend | BackendFactory,
              out_dir: str | os.PathLike, settings: RecaptionParams, progress: bool = True
              ) -> RecaptionSummary:
    """Caption every manifest id without a caption in `out_dir`, writing shards as it goes.

    `backend` is a built backend, or a BackendFactory; with `settings.executor.kind: ray` it
    must be a factory, so that each Ray actor builds its own (a model is not shipped).
    """
    started = time.perf_counter()
    validate_manifest(manifest, settings)
    declared = getattr(backend, "name", None)
    if declared is not None and declared != settings.backend:
        given = (f"a factory of {getattr(backend.build, '__name__', backend.build)}"
                 if isinstance(backend, BackendFactory) else type(backend).__name__)
        raise ValueError(f"settings.backend is {settings.backend!r} but the backend given is "
                         f"{given} ({declared!r})")
    if settings.executor.kind == "ray" and not isinstance(backend, BackendFactory):
        raise TypeError(f"executor 'ray' builds the backend in each Ray worker: pass a "
                        f"BackendFactory (e.g. BackendFactory.local(model_dir)), not a built "
                        f"{type(backend).__name__}")
    if settings.executor.kind == "ray":
        import_ray()  # a missing extra fails before the output folder is touched
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Another run with other outputs may share this folder (same captioner and prompts).
    with sole_writer(out, "recaptioning"):
        return _recaption_into(out, manifest, backend, settings, progress, started)


def _recaption_into(out: Path, manifest: pd.DataFrame, backend: CaptionBackend | BackendFactory,
                    settings: RecaptionParams, progress: bool, started: float
                    ) -> RecaptionSummary:
    leftovers = remove_tmp_leftovers(out)
    if leftovers:
        logger.info("removed %d unfinished shard file(s) of an interrupted run", len(leftovers))
    before = read_shards(out)
    done = set(before.captions["id"])
    failed_before = set(before.failures["id"])
    remaining = manifest[~manifest["id"].isin(done)]
    skipped = len(manifest) - len(remaining)
    retried = int(remaining["id"].isin(failed_before).sum())
    logger.info("recaptioning %d of %d ids (%d done before, %d to retry) into %s",
                len(remaining), len(manifest), skipped, retried, out)

    index = next_shard_index(out)
    shards_written, captioned = 0, 0
    reasons: Counter[str] = Counter()
    columns = ["id", "image"] + (["alt_text"] if "alt_text" in remaining.columns else [])
    rows: list[dict[str, Any]] = remaining[columns].to_dict("records")
    shards = [_plan(rows[start:start + settings.shard_size], settings)
              for start in range(0, len(rows), settings.shard_size)]
    # One row per backend batch, so each executor call captions exactly the batch that
    # length grouping made; outcomes come back in order, whichever worker ran them.
    outcomes = iter_map_batches(_batch_table(shards), _CaptionWorker, settings.executor,
                                batch_size=1, fn_constructor_args=(backend,))
    bar = tqdm(total=len(rows), desc="recaptioning", unit="img", disable=not progress)
    try:
        for shard in shards:
            caption_rows: list[dict[str, str]] = []
            failure_rows: list[dict[str, str]] = list(shard.missing)
            bar.update(len(shard.missing))
            for batch in shard.batches:
                result = next(outcomes).iloc[0]
                if list(result["ids"]) != [item.id for item in batch]:  # an executor bug
                    raise RuntimeError("captioning outcomes came back out of order")
                for item_id, caption, error in zip(result["ids"], result["captions"],
                                                   result["errors"], strict=True):
                    if caption is not None:
                        caption_rows.append({"id": item_id, "caption": caption,
                                             "prompt_kind": shard.kinds[item_id],
                                             "backend": settings.backend})
                    else:
                        failure_rows.append({"id": item_id, "error": str(error)})
                bar.update(len(batch))
            # Captions first: a kill between the two writes then only loses failure rows,
            # and failed ids are retried anyway because they have no caption.
            if caption_rows:
                write_shard(pd.DataFrame(caption_rows), out, "captions", index)
                shards_written += 1
            if failure_rows:
                write_shard(pd.DataFrame(failure_rows), out, "failures", index)
                shards_written += 1
                for failure in failure_rows:
                    reasons[_reason_kind(failure["error"])] += 1
            captioned += len(caption_rows)
            index += 1
    finally:
        bar.close()

    truncated = sum(shard.truncated for shard in shards)
    summary = RecaptionSummary(
        total=len(manifest), skipped=skipped, captioned=captioned,
        failed=sum(reasons.values()), failed_by_reason=dict(reasons), retried=retried,
        duplicates=before.duplicates, shards_written=shards_written,
        seconds=time.perf_counter() - started,
        noted={ALT_TEXT_TRUNCATED: truncated} if truncated else {})
    if before.duplicates:
        logger.warning("%s holds %d duplicate caption rows; readers keep each id's first",
                       out, before.duplicates)
    logger.info("recaptioned %d, failed %d %s, skipped %d, in %.1fs (%.1f captions/s)%s",
                summary.captioned, summary.failed, dict(reasons), summary.skipped,
                summary.seconds, summary.captions_per_s,
                f"; {truncated} alt-texts cut to {settings.max_alt_text_chars} characters "
                f"to fit the prompt" if truncated else "")
    return summary
