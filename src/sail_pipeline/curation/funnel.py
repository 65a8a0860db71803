"""The whole curation run, ingest → validate → dedup, and the accounting of every record.

Two entry points share one implementation (`_Run`): `run_curation` returns DataFrames, for small
runs and tests; `curate_to_parquet` streams the manifest and the quarantine into Parquet files,
so its memory does not grow with the images it keeps. What it still holds per record is what
dedup and the duplicate-id check need, O(n) but small: ids, sha256 digests and perceptual
hashes in numpy arrays (`index_bytes`: ~150 bytes a kept record plus its id; 167 B a record in
benchmarks/curation_many_files.py, against ~900 B in dicts before). A folder source holds one
folder's listing per level of depth, not the tree's.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sail_pipeline.curation.batch import check_batch, raw_table
from sail_pipeline.curation.dedup import (
    ExactHashIndex,
    GrowingArray,
    NearHashIndex,
    SeenIds,
    prefer_new_copy,
)
from sail_pipeline.curation.output import FrameSink, ParquetSink, ParquetTable, Row, Sink
from sail_pipeline.curation.reasons import STAGE_OF, Note, Reason, Rejection
from sail_pipeline.curation.sources import RawRecord, iter_records
from sail_pipeline.executors import ExecutorParams, import_ray, iter_map_batches
from sail_pipeline.schema import CurationFilterParams, SourceSpec, check_unique_names
from sail_pipeline.storage import written_whole_or_not_at_all

FUNNEL_COLUMNS = ["stage", "reason", "count"]
TOTAL, NOTE = "total", "note"
# Kept rows go to the sink once their images reach this size, and at the end of every chunk:
# what a run holds of its images (Arrow copies them once more while writing), and a Parquet
# row group's size. Smaller would bloat the file's footer, one entry per row group and column.
FLUSH_BYTES = 16 << 20
# What a kept record's alt-text was, a byte a kept position (exact dedup's rule needs it).
_HAS_ALT_TEXT, _ALT_TEXT_EMPTY_TO_NULL = 1, 2
# The notes that depend on the alt-text, not on the bytes: exact copies may differ in them.
_ALT_TEXT_NOTES = frozenset({Note.ALT_TEXT_EMPTY_TO_NULL.value, Note.ALT_TEXT_TRUNCATED.value})


class CurationAccountingError(RuntimeError):
    """kept + quarantined no longer equals the input: a bug in curation, never bad data."""


def funnel_count(funnel: pd.DataFrame, reason: str) -> int:
    """A funnel count: a total ("input", "kept", "quarantined"), a reason or a note."""
    return int(funnel.loc[funnel["reason"] == reason, "count"].sum())


@dataclass
class CurationResult:
    manifest: pd.DataFrame
    quarantine: pd.DataFrame
    funnel: pd.DataFrame

    def count(self, reason: str) -> int:
        """A funnel count: a total ("input", "kept", "quarantined"), a reason or a note."""
        return funnel_count(self.funnel, reason)


@dataclass
class CurationFiles:
    """What `curate_to_parquet` wrote, with the funnel."""

    manifest: ParquetTable
    quarantine: ParquetTable
    funnel: pd.DataFrame
    # The run's id and dedup indexes at the end: the part of its memory that grows with the
    # number of records (a folder's listing aside).
    index_bytes: int

    def count(self, reason: str) -> int:
        return funnel_count(self.funnel, reason)


class _Run:
    """Decides one record at a time, in input order, and hands the rows to a sink.

    The per-record work (decode, normalise, hash) arrives precomputed from `check_batch`;
    what is decided here depends on the records before, so it stays in one process. It keeps
    no row once the sink has it: only the indexes, which hold a few dozen bytes a record.

    Exact duplicates: a later copy with an alt-text replaces a kept copy without one
    (`dedup.prefer_new_copy`), whichever chunk, flush or source each is in. The replaced copy
    is quarantined as `exact_duplicate` then; if its row had already gone to the sink, the sink
    withdraws it (`Sink.withdraw`), so the manifest never holds it.
    """

    def __init__(self, settings: CurationFilterParams, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink
        self.seen = SeenIds()
        self.kept_ids = GrowingArray(np.int64)  # kept position → the id's position in `seen`
        self.n_input = 0
        self.n_quarantined = 0
        self.reasons: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.exact = ExactHashIndex() if settings.exact_dedup else None
        # kept position → _HAS_ALT_TEXT | _ALT_TEXT_EMPTY_TO_NULL
        self.kept_alt_text = GrowingArray(np.uint8) if settings.exact_dedup else None
        distance = settings.near_duplicate_max_distance
        self.near = NearHashIndex(distance) if distance is not None else None
        self._kept: dict[str, Row] = {}  # by id, in decision order (a replaced copy leaves)
        self._quarantined: list[Row] = []
        self._held_bytes = 0
        # This chunk's outcomes, for its accounting check.
        self._chunk_kept: dict[str, None] = {}
        self._chunk_quarantined: list[tuple[str, str]] = []

    @property
    def n_kept(self) -> int:
        return len(self.kept_ids)

    @property
    def index_bytes(self) -> int:
        indexes = [self.seen, self.kept_ids, self.exact, self.kept_alt_text, self.near]
        return sum(index.nbytes for index in indexes if index is not None)

    def _kept_id(self, position: int) -> str:
        return self.seen.pool[int(self.kept_ids.values[position])]

    def admit(self, record: RawRecord) -> tuple[int, Rejection | None]:
        """Counts the record in: its id's position, and the rejection when it needs no
        checking (else None)."""
        self.n_input += 1
        position, before = self.seen.see(record.id)
        if before:
            # By input order, so the decision is the same on every run of the same sources.
            return position, Rejection(Reason.DUPLICATE_ID,
                                       f"id seen {before} time(s) before; "
                                       "the first occurrence is the one checked")
        if record.error is not None:
            return position, Rejection(record.error.reason, record.error.detail)
        return position, None

    def decide(self, record: RawRecord, id_position: int, checked: dict[str, Any]) -> None:
        """Dedup an admitted record against those kept so far; keep it or quarantine it."""
        try:
            self._decide(record, id_position, checked)
        except Rejection as rejection:
            self.quarantine(record, rejection)

    def _decide(self, record: RawRecord, id_position: int, checked: dict[str, Any]) -> None:
        sha256, reason = checked["sha256"], checked["reason"]
        if sha256 is None:  # failed before its bytes were hashed
            raise Rejection(Reason(reason), checked["detail"])
        # Checked before the image's own verdict, as identical bytes share it: only kept
        # records are indexed, so a bad first copy absorbs nothing.
        if self.exact is not None and (first := self.exact.match(sha256)) is not None:
            assert self.kept_alt_text is not None
            kept_has_alt_text = bool(self.kept_alt_text.values[first] & _HAS_ALT_TEXT)
            if reason is not None or not prefer_new_copy(kept_has_alt_text,
                                                         checked["alt_text"] is not None):
                raise Rejection(Reason.EXACT_DUPLICATE, f"same sha256 as {self._kept_id(first)}")
            self._replace(first, record, id_position, checked)
            return
        if reason is not None:
            raise Rejection(Reason(reason), checked["detail"])
        value = int(checked["phash"], 16)
        if self.near is not None and (found := self.near.match(value)) is not None:
            position, distance = found
            raise Rejection(Reason.NEAR_DUPLICATE,
                            f"pHash distance {distance} to {self._kept_id(position)}")
        # Every kept record enters each index, so a kept position is the same in all of them.
        self.kept_ids.append(id_position)
        if self.exact is not None:
            self.exact.add(sha256)
        if self.kept_alt_text is not None:
            self.kept_alt_text.append(self._alt_text_flags(checked))
        if self.near is not None:
            self.near.add(value)
        self._keep(record, checked)

    @staticmethod
    def _alt_text_flags(checked: dict[str, Any]) -> int:
        flags = _HAS_ALT_TEXT if checked["alt_text"] is not None else 0
        if Note.ALT_TEXT_EMPTY_TO_NULL.value in (checked["normalised"] or "").split(";"):
            flags |= _ALT_TEXT_EMPTY_TO_NULL
        return flags

    def _replace(self, position: int, record: RawRecord, id_position: int,
                 checked: dict[str, Any]) -> None:
        """The record, a copy with an alt-text, takes kept `position` from the copy there,
        which has none: that one is quarantined (and withdrawn from the sink if it went)."""
        assert self.kept_alt_text is not None
        replaced = self._kept_id(position)
        # Its notes leave the funnel: the bytes' own notes are the record's (the same bytes),
        # its alt-text's were at most `alt_text_empty_to_null` (it had no alt-text).
        notes = [note for note in (checked["normalised"] or "").split(";")
                 if note and note not in _ALT_TEXT_NOTES]
        if self.kept_alt_text.values[position] & _ALT_TEXT_EMPTY_TO_NULL:
            notes.append(Note.ALT_TEXT_EMPTY_TO_NULL.value)
        self.notes.subtract(notes)
        # Same bytes, so the same sha256 and pHash: the exact and near indexes stay as they are.
        self.kept_ids.values[position] = id_position
        self.kept_alt_text.values[position] = self._alt_text_flags(checked)
        row = self._kept.pop(replaced, None)
        if row is None:  # already handed to the sink
            self.sink.withdraw(replaced)
        else:
            self._held_bytes -= len(row["image"])
        source, _, source_id = replaced.partition(":")  # a source name holds no colon
        in_chunk = replaced in self._chunk_kept
        self._chunk_kept.pop(replaced, None)
        self._quarantine_row(replaced, source, source_id, Rejection(
            Reason.EXACT_DUPLICATE, f"same sha256 as {record.id}, kept for its alt-text"),
            in_chunk=in_chunk)
        self._keep(record, checked)

    def _keep(self, record: RawRecord, checked: dict[str, Any]) -> None:
        normalised = checked["normalised"]
        self.notes.update(normalised.split(";") if normalised else [])
        image = checked["image"]
        self._held_bytes += len(image)
        self._chunk_kept[record.id] = None
        self._kept[record.id] = {
            "id": record.id,
            "source": record.source,
            "source_id": record.source_id,
            "sha256": checked["sha256"],
            "phash": checked["phash"],
            "width": checked["width"],
            "height": checked["height"],
            "format": checked["format"],
            "mode_in": checked["mode_in"],
            "normalised": normalised,
            "alt_text": checked["alt_text"],
            "image": image,
        }

    def quarantine(self, record: RawRecord, rejection: Rejection) -> None:
        self._quarantine_row(record.id, record.source, record.source_id, rejection)

    def _quarantine_row(self, record_id: str, source: str, source_id: str,
                        rejection: Rejection, in_chunk: bool = True) -> None:
        """`in_chunk`: the record is one of this chunk's (a replaced copy may be earlier's)."""
        self.n_quarantined += 1
        self.reasons[rejection.reason.value] += 1
        if in_chunk:
            self._chunk_quarantined.append((record_id, rejection.reason.value))
        self._quarantined.append({
            "id": record_id,
            "source": source,
            "source_id": source_id,
            "reason": rejection.reason.value,
            "detail": rejection.detail,
        })

    def process(self, records: Sequence[RawRecord], executor: ExecutorParams,
                progress: _Progress) -> None:
        """A chunk of records: checked in batches on the executor, then decided in order."""
        admitted = [self.admit(record) for record in records]
        to_check = [record for record, (_, rejection) in zip(records, admitted, strict=True)
                    if rejection is None]
        outputs = iter_map_batches(raw_table(to_check),
                                   partial(check_batch, settings=self.settings), executor)
        checked = (row for frame in outputs for row in frame.to_dict("records"))
        for record, (id_position, rejection) in zip(records, admitted, strict=True):
            if rejection is None:
                self.decide(record, id_position, next(checked))
            else:
                self.quarantine(record, rejection)
            progress.advance(record.source, self.n_kept, self.n_quarantined)
            if self._held_bytes >= FLUSH_BYTES:
                self.flush()
        self.flush()
        self._check_chunk(records)

    def flush(self) -> None:
        if self._kept or self._quarantined:
            self.sink.write(list(self._kept.values()), self._quarantined)
        self._kept, self._quarantined, self._held_bytes = {}, [], 0

    def _check_chunk(self, records: Sequence[RawRecord]) -> None:
        # The whole run's ids are not held (each chunk's are), so the guard runs chunk by
        # chunk; a repeat across chunks is a duplicate_id by construction (`seen`).
        # A copy of an earlier chunk replaced in this one is in neither list: its own chunk
        # counted it kept, and the run's totals count it quarantined (`funnel`).
        quarantined = self._chunk_quarantined
        check_accounting(Counter(record.id for record in records),
                         pd.DataFrame({"id": pd.Series(list(self._chunk_kept), dtype=object)}),
                         pd.DataFrame({"id": pd.Series([i for i, _ in quarantined], dtype=object),
                                       "reason": pd.Series([r for _, r in quarantined],
                                                           dtype=object)}))
        self._chunk_kept, self._chunk_quarantined = {}, []

    def funnel(self) -> pd.DataFrame:
        if self.n_kept + self.n_quarantined != self.n_input:
            raise CurationAccountingError(
                f"curation lost track of records: kept {self.n_kept} + quarantined "
                f"{self.n_quarantined} != input {self.n_input}")
        return funnel_table(self.n_input, self.n_kept, self.reasons, self.notes)


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


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (the kernel's high-water mark).

    On Linux VmHWM, the peak since this program started: getrusage's ru_maxrss also keeps the
    peak of the process it was forked from (a large parent would mask a small child).
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows: the peak working set
        import psutil

        return int(psutil.Process().memory_info().peak_wset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- records/s" if speed is None else f"{speed:,.0f} records/s")


class _PeakMemoryColumn(ProgressColumn):
    # Read at each refresh (a few times a second), not per record.
    def render(self, task: Task) -> Text:
        return Text(f"peak RSS {peak_rss_bytes() / 2**20:,.0f} MiB")


class _Progress:
    """A line per source: records done of its total (where its reader knows it up front),
    kept and quarantined so far, records/s, and the process's peak resident memory."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._totals: dict[str, int] = {}
        self._tasks: dict[str, Any] = {}
        self._current: str | None = None

    def total(self, source: str, n: int) -> None:
        self._totals[source] = n

    def advance(self, source: str, kept: int, quarantined: int) -> None:
        if self._progress is None:
            return
        if source != self._current:
            self._finish_current()
            self._current = source
            self._tasks[source] = self._progress.add_task(source, total=self._totals.get(source))
        self._progress.update(self._tasks[source], advance=1,
                              description=f"{source}: {kept} kept, {quarantined} quarantined")

    def _finish_current(self) -> None:
        # A source without a known total ends as a full bar, not a pulsing one.
        if self._progress is not None and self._current is not None:
            task = self._tasks[self._current]
            self._progress.update(task, total=self._progress.tasks[task].completed)

    def close(self) -> None:
        self._finish_current()


@contextmanager
def _progress(enabled: bool, console: Console | None = None) -> Iterator[_Progress]:
    if not enabled:
        yield _Progress(None)
        return
    columns = (SpinnerColumn(), TextColumn("curating {task.description}"), BarColumn(),
               MofNCompleteColumn(), _RateColumn(), _PeakMemoryColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        shown = _Progress(progress)
        yield shown
        shown.close()


def _curate(sources: Sequence[SourceSpec], settings: CurationFilterParams | None,
            world_scenes: pd.DataFrame | None, progress: bool, executor: ExecutorParams | None,
            sink: Sink) -> _Run:
    settings = settings or CurationFilterParams()
    sources = list(sources)
    check_unique_names(sources)
    if world_scenes is None and any(spec.kind == "world" for spec in sources):
        raise ValueError("a `world` source needs the scene table: pass world_scenes=")
    executor = executor or ExecutorParams()
    if executor.kind == "ray":
        import_ray()  # a missing extra fails before any source is read
    run = _Run(settings, sink)
    with _progress(progress) as shown:
        records = (record for spec in sources
                   for record in iter_records(spec, world_scenes, on_total=shown.total))
        # In chunks, so that raw bytes of sources read into memory (shards, Parquet) are
        # held for one chunk at a time, not for the whole run.
        while chunk := list(islice(records, executor.chunk_size)):
            run.process(chunk, executor, shown)
    return run


def run_curation(sources: Sequence[SourceSpec], settings: CurationFilterParams | None = None,
                 world_scenes: pd.DataFrame | None = None, progress: bool = True,
                 executor: ExecutorParams | None = None) -> CurationResult:
    """Read every source in order, validate, normalise and dedup; account for every record.

    The manifest (every kept image) is returned in memory: for runs that fit there. A folder
    of any size goes through `curate_to_parquet`, which gives the same rows in files.

    `executor` says where decoding and normalising run (in-process by default, or on Ray);
    the result is the same on either, because dedup is decided here, in input order.

    Bad input never raises: it ends in `quarantine` with a reason. What does raise is a wrong
    call (duplicate source names, a `world` source without `world_scenes`) and, as a guard
    that should never fire, a CurationAccountingError.
    """
    sink = FrameSink()
    run = _curate(sources, settings, world_scenes, progress, executor, sink)
    manifest, quarantine = sink.frames()
    return CurationResult(manifest, quarantine, run.funnel())


def curate_to_parquet(sources: Sequence[SourceSpec], manifest_path: str | Path,
                      quarantine_path: str | Path, settings: CurationFilterParams | None = None,
                      world_scenes: pd.DataFrame | None = None, progress: bool = True,
                      executor: ExecutorParams | None = None) -> CurationFiles:
    """`run_curation`, with the manifest and the quarantine written to Parquet as they are
    decided: the same rows in the same order, and memory that does not hold the images.

    Each file appears whole when the run ends (it is written beside its path until then); a
    run that fails leaves neither, and a full disk says so (`storage.DiskFull`).
    """
    with written_whole_or_not_at_all(manifest_path):
        sink = ParquetSink(manifest_path, quarantine_path)
        try:
            run = _curate(sources, settings, world_scenes, progress, executor, sink)
            funnel = run.funnel()
        except BaseException:
            sink.abort()
            raise
        manifest, quarantine = sink.close()
    return CurationFiles(manifest, quarantine, funnel, run.index_bytes)
