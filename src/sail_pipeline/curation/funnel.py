"""The whole curation run, ingest → validate → dedup, and the accounting of every record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from sail_pipeline.curation.batch import check_batch, raw_table
from sail_pipeline.curation.dedup import ExactDuplicateIndex, NearDuplicateIndex
from sail_pipeline.curation.reasons import STAGE_OF, Note, Reason, Rejection
from sail_pipeline.curation.sources import RawRecord, iter_records
from sail_pipeline.executors import ExecutorParams, import_ray, iter_map_batches
from sail_pipeline.schema import CurationFilterParams, SourceSpec, check_unique_names

MANIFEST_COLUMNS = ["id", "source", "source_id", "sha256", "phash", "width", "height", "format",
                    "mode_in", "normalised", "alt_text", "image"]
QUARANTINE_COLUMNS = ["id", "source", "source_id", "reason", "detail"]
FUNNEL_COLUMNS = ["stage", "reason", "count"]
TOTAL, NOTE = "total", "note"


class CurationAccountingError(RuntimeError):
    """kept + quarantined no longer equals the input: a bug in curation, never bad data."""


@dataclass
class CurationResult:
    manifest: pd.DataFrame
    quarantine: pd.DataFrame
    funnel: pd.DataFrame

    def count(self, reason: str) -> int:
        """A funnel count: a total ("input", "kept", "quarantined"), a reason or a note."""
        rows = self.funnel[self.funnel["reason"] == reason]
        return int(rows["count"].sum())


class _Run:
    """Holds what one curation run has decided so far; decides one record at a time, in order.

    The per-record work (decode, normalise, hash) arrives precomputed from `check_batch`;
    what is decided here depends on the records before, so it stays in one process.
    """

    def __init__(self, settings: CurationFilterParams) -> None:
        self.settings = settings
        self.input_ids: Counter[str] = Counter()
        self.kept: list[dict[str, Any]] = []
        self.quarantined: list[dict[str, str]] = []
        self.notes: Counter[str] = Counter()
        self.exact = ExactDuplicateIndex() if settings.exact_dedup else None
        distance = settings.near_duplicate_max_distance
        self.near = NearDuplicateIndex(distance) if distance is not None else None

    def admit(self, record: RawRecord) -> Rejection | None:
        """Counts the record in; the rejection when it needs no checking, else None."""
        self.input_ids[record.id] += 1
        if self.input_ids[record.id] > 1:
            # By input order, so the decision is the same on every run of the same sources.
            return Rejection(Reason.DUPLICATE_ID,
                             f"id seen {self.input_ids[record.id] - 1} time(s) before; "
                             "the first occurrence is the one checked")
        if record.error is not None:
            return Rejection(record.error.reason, record.error.detail)
        return None

    def decide(self, record: RawRecord, checked: dict[str, Any]) -> None:
        """Dedup an admitted record against those kept so far; keep it or quarantine it."""
        try:
            self._decide(record, checked)
        except Rejection as rejection:
            self.quarantine(record, rejection)

    def _decide(self, record: RawRecord, checked: dict[str, Any]) -> None:
        sha256, reason = checked["sha256"], checked["reason"]
        if sha256 is None:  # failed before its bytes were hashed
            raise Rejection(Reason(reason), checked["detail"])
        # Checked before the image's own verdict, as identical bytes share it: only kept
        # records are indexed, so a bad first copy absorbs nothing.
        if self.exact is not None and (first := self.exact.match(sha256)) is not None:
            raise Rejection(Reason.EXACT_DUPLICATE, f"same sha256 as {first}")
        if reason is not None:
            raise Rejection(Reason(reason), checked["detail"])
        value = int(checked["phash"], 16)
        if self.near is not None and (found := self.near.match(value)) is not None:
            kept_id, distance = found
            raise Rejection(Reason.NEAR_DUPLICATE, f"pHash distance {distance} to {kept_id}")
        normalised = checked["normalised"]
        self.notes.update(normalised.split(";") if normalised else [])
        if self.exact is not None:
            self.exact.add(record.id, sha256)
        if self.near is not None:
            self.near.add(record.id, value)
        self.kept.append({
            "id": record.id,
            "source": record.source,
            "source_id": record.source_id,
            "sha256": sha256,
            "phash": checked["phash"],
            "width": checked["width"],
            "height": checked["height"],
            "format": checked["format"],
            "mode_in": checked["mode_in"],
            "normalised": normalised,
            "alt_text": checked["alt_text"],
            "image": checked["image"],
        })

    def process(self, records: Sequence[RawRecord], executor: ExecutorParams,
                advance: Callable[[str, int, int], None]) -> None:
        """A chunk of records: checked in batches on the executor, then decided in order."""
        rejections = [self.admit(record) for record in records]
        to_check = [r for r, rejection in zip(records, rejections, strict=True)
                    if rejection is None]
        outputs = iter_map_batches(raw_table(to_check),
                                   partial(check_batch, settings=self.settings), executor)
        checked = (row for frame in outputs for row in frame.to_dict("records"))
        for record, rejection in zip(records, rejections, strict=True):
            if rejection is None:
                self.decide(record, next(checked))
            else:
                self.quarantine(record, rejection)
            advance(record.source, len(self.kept), len(self.quarantined))

    def quarantine(self, record: RawRecord, rejection: Rejection) -> None:
        self.quarantined.append({
            "id": record.id,
            "source": record.source,
            "source_id": record.source_id,
            "reason": rejection.reason.value,
            "detail": rejection.detail,
        })

    def result(self) -> CurationResult:
        manifest = pd.DataFrame(self.kept, columns=MANIFEST_COLUMNS)
        manifest = manifest.astype({"width": "int64", "height": "int64"})
        quarantine = pd.DataFrame(self.quarantined, columns=QUARANTINE_COLUMNS)
        check_accounting(self.input_ids, manifest, quarantine)
        funnel = funnel_table(sum(self.input_ids.values()), len(manifest),
                              Counter(quarantine["reason"]), self.notes)
        return CurationResult(manifest, quarantine, funnel)


def funnel_table(n_input: int, n_kept: int, reasons: Counter[str], notes: Counter[str]
                 ) -> pd.DataFrame:
    """Totals, then every reason and note of the vocabulary (zeros too, for a stable schema)."""
    rows: list[tuple[str, str, int]] = [
        (TOTAL, "input", n_input),
        (TOTAL, "kept", n_kept),
        (TOTAL, "quarantined", sum(reasons.values())),
    ]
    rows += [(STAGE_OF[reason], reason.value, reasons.get(reason.value, 0)) for reason in Reason]
    rows += [(NOTE, note.value, notes.get(note.value, 0)) for note in Note]
    return pd.DataFrame(rows, columns=FUNNEL_COLUMNS)


def funnel_metrics(funnel: pd.DataFrame, prefix: str = "curation") -> dict[str, int]:
    """Flat metric names for MLflow, e.g. `curation.kept`, `curation.validate.too_small`."""
    return {f"{prefix}.{stage}.{reason}" if stage != TOTAL else f"{prefix}.{reason}": int(count)
            for stage, reason, count in funnel[FUNNEL_COLUMNS].itertuples(index=False)}


def check_accounting(input_ids: Counter[str], manifest: pd.DataFrame, quarantine: pd.DataFrame
                     ) -> None:
    """Every input record ends exactly once, kept or quarantined; raises if that ever fails."""
    kept, quarantined = Counter(manifest["id"]), Counter(quarantine["id"])
    problems = []
    n_input = sum(input_ids.values())
    if len(manifest) + len(quarantine) != n_input:
        problems.append(f"kept {len(manifest)} + quarantined {len(quarantine)} != input {n_input}")
    if kept + quarantined != input_ids:
        difference = (input_ids - kept - quarantined) + (kept + quarantined - input_ids)
        problems.append(f"ids do not partition the input, e.g. {sorted(difference)[:5]}")
    repeated = sorted(i for i, c in kept.items() if c > 1)
    if repeated:
        problems.append(f"ids kept more than once: {repeated[:5]}")
    # A duplicate_id row shares its id with the first occurrence, which may be kept.
    other = quarantine.loc[quarantine["reason"] != Reason.DUPLICATE_ID.value, "id"]
    both = sorted(set(kept) & set(other))
    if both:
        problems.append(f"ids both kept and quarantined: {both[:5]}")
    if problems:
        raise CurationAccountingError("curation lost track of records: " + "; ".join(problems))


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    if not enabled:
        yield lambda source, kept, quarantined: None
        return
    columns = (SpinnerColumn(), TextColumn("curating {task.description}"),
               TextColumn("{task.completed} records"), TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("", total=None)

        def advance(source: str, kept: int, quarantined: int) -> None:
            progress.update(task, advance=1,
                            description=f"{source}: {kept} kept, {quarantined} quarantined")

        yield advance


def run_curation(sources: Sequence[SourceSpec], settings: CurationFilterParams | None = None,
                 world_scenes: pd.DataFrame | None = None, progress: bool = True,
                 executor: ExecutorParams | None = None) -> CurationResult:
    """Read every source in order, validate, normalise and dedup; account for every record.

    `executor` says where decoding and normalising run (in-process by default, or on Ray);
    the result is the same on either, because dedup is decided here, in input order.

    Bad input never raises: it ends in `quarantine` with a reason. What does raise is a wrong
    call (duplicate source names, a `world` source without `world_scenes`) and, as a guard
    that should never fire, a CurationAccountingError.
    """
    settings = settings or CurationFilterParams()
    sources = list(sources)
    check_unique_names(sources)
    if world_scenes is None and any(spec.kind == "world" for spec in sources):
        raise ValueError("a `world` source needs the scene table: pass world_scenes=")
    executor = executor or ExecutorParams()
    if executor.kind == "ray":
        import_ray()  # a missing extra fails before any source is read
    run = _Run(settings)
    records = (record for spec in sources for record in iter_records(spec, world_scenes))
    with _progress(progress) as advance:
        # In chunks, so that raw bytes of sources read into memory (shards, Parquet) are
        # held for one chunk at a time, not for the whole run.
        while chunk := list(islice(records, executor.chunk_size)):
            run.process(chunk, executor, advance)
    return run.result()
