"""The whole curation run, ingest → validate → dedup, and the accounting of every record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from sail_pipeline.curation.dedup import ExactDuplicateIndex, NearDuplicateIndex, hash_hex, phash
from sail_pipeline.curation.params import CurationSettings, SourceSpec, check_unique_names
from sail_pipeline.curation.reasons import STAGE_OF, Note, Reason, Rejection
from sail_pipeline.curation.sources import RawRecord, iter_records
from sail_pipeline.curation.validate import check_image, encode_png, prepare

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
    """Holds what one curation run has decided so far; processes one record at a time."""

    def __init__(self, settings: CurationSettings) -> None:
        self.settings = settings
        self.input_ids: Counter[str] = Counter()
        self.kept: list[dict[str, Any]] = []
        self.quarantined: list[dict[str, str]] = []
        self.notes: Counter[str] = Counter()
        self.exact = ExactDuplicateIndex() if settings.exact_dedup else None
        distance = settings.near_duplicate_max_distance
        self.near = NearDuplicateIndex(distance) if distance is not None else None

    def process(self, record: RawRecord) -> None:
        record_id = record.id
        self.input_ids[record_id] += 1
        if self.input_ids[record_id] > 1:
            # By input order, so the decision is the same on every run of the same sources.
            self._quarantine(record, Rejection(
                Reason.DUPLICATE_ID, f"id seen {self.input_ids[record_id] - 1} time(s) before; "
                "the first occurrence is the one checked"))
            return
        if record.error is not None:
            self._quarantine(record, Rejection(record.error.reason, record.error.detail))
            return
        try:
            self._check(record)
        except Rejection as rejection:
            self._quarantine(record, rejection)

    def _check(self, record: RawRecord) -> None:
        prepared = prepare(record, self.settings)
        # Identical bytes decode identically, so an exact duplicate of a kept image need not
        # be decoded again; only kept records are indexed, so a bad first copy absorbs nothing.
        if self.exact is not None and (first := self.exact.match(prepared.sha256)) is not None:
            raise Rejection(Reason.EXACT_DUPLICATE, f"same sha256 as {first}")
        valid = check_image(prepared.data, self.settings)
        value = phash(valid.image)
        if self.near is not None and (found := self.near.match(value)) is not None:
            kept_id, distance = found
            raise Rejection(Reason.NEAR_DUPLICATE, f"pHash distance {distance} to {kept_id}")
        notes = [*valid.notes, *prepared.notes]
        self.notes.update(note.value for note in notes)
        if self.exact is not None:
            self.exact.add(record.id, prepared.sha256)
        if self.near is not None:
            self.near.add(record.id, value)
        self.kept.append({
            "id": record.id,
            "source": record.source,
            "source_id": record.source_id,
            "sha256": prepared.sha256,
            "phash": hash_hex(value),
            "width": valid.width,
            "height": valid.height,
            "format": valid.format,
            "mode_in": valid.mode_in,
            "normalised": ";".join(note.value for note in notes),
            "alt_text": prepared.alt_text,
            "image": encode_png(valid.image),
        })

    def _quarantine(self, record: RawRecord, rejection: Rejection) -> None:
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


def run_curation(sources: Sequence[SourceSpec], settings: CurationSettings | None = None,
                 world_scenes: pd.DataFrame | None = None, progress: bool = True
                 ) -> CurationResult:
    """Read every source in order, validate, normalise and dedup; account for every record.

    Bad input never raises: it ends in `quarantine` with a reason. What does raise is a wrong
    call (duplicate source names, a `world` source without `world_scenes`) and, as a guard
    that should never fire, a CurationAccountingError.
    """
    settings = settings or CurationSettings()
    sources = list(sources)
    check_unique_names(sources)
    if world_scenes is None and any(spec.kind == "world" for spec in sources):
        raise ValueError("a `world` source needs the scene table: pass world_scenes=")
    run = _Run(settings)
    with _progress(progress) as advance:
        for spec in sources:
            for record in iter_records(spec, world_scenes):
                run.process(record)
                advance(spec.name, len(run.kept), len(run.quarantined))
    return run.result()
