"""Where curation's rows go as they are decided: lists for a DataFrame, or Parquet files.

A run hands its kept and quarantined rows to a sink a few MB at a time (`funnel`); the sink
decides what stays in memory. `FrameSink` keeps them all (the DataFrames of `run_curation`, for
small runs and tests); `ParquetSink` appends them to two Parquet files, one row group per
hand-over, so a run over any number of images holds one hand-over of them at a time.

A kept row already handed over can be withdrawn (`withdraw`: an exact duplicate replaced by a
later copy with an alt-text). `FrameSink` leaves it out of its frame; `ParquetSink` copies the
manifest without it, a row group at a time, when it closes, and only if a row was withdrawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MANIFEST_COLUMNS = ["id", "source", "source_id", "sha256", "phash", "width", "height", "format",
                    "mode_in", "normalised", "alt_text", "image"]
QUARANTINE_COLUMNS = ["id", "source", "source_id", "reason", "detail"]

# The types pandas writes for the DataFrames (large_string for its str columns), fixed up
# front: a file written part by part needs one schema, whatever the first part held (an
# all-null alt_text would otherwise be typed `null`).
_TEXT = pa.large_string()
MANIFEST_SCHEMA = pa.schema(
    [(name, _TEXT) for name in MANIFEST_COLUMNS[:5]]
    + [("width", pa.int64()), ("height", pa.int64())]
    + [(name, _TEXT) for name in MANIFEST_COLUMNS[7:11]]
    + [("image", pa.binary())])
QUARANTINE_SCHEMA = pa.schema([(name, _TEXT) for name in QUARANTINE_COLUMNS])

Row = dict[str, Any]


class Sink(Protocol):
    def write(self, kept: list[Row], quarantined: list[Row]) -> None:
        """Takes rows in decision order; the caller does not touch the lists afterwards."""

    def withdraw(self, record_id: str) -> None:
        """A kept row written earlier is not kept after all: leave it out of the manifest."""


class FrameSink:
    """Every row in memory, for the DataFrames of `run_curation`."""

    def __init__(self) -> None:
        self.kept: list[Row] = []
        self.quarantined: list[Row] = []
        self.withdrawn: set[str] = set()

    def write(self, kept: list[Row], quarantined: list[Row]) -> None:
        self.kept += kept
        self.quarantined += quarantined

    def withdraw(self, record_id: str) -> None:
        self.withdrawn.add(record_id)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        kept = [row for row in self.kept if row["id"] not in self.withdrawn]
        manifest = pd.DataFrame(kept, columns=MANIFEST_COLUMNS)
        manifest = manifest.astype({"width": "int64", "height": "int64"})
        return manifest, pd.DataFrame(self.quarantined, columns=QUARANTINE_COLUMNS)


@dataclass(frozen=True)
class ParquetTable:
    """A Parquet file written whole, and its row count (`len`).

    What a node returns instead of a DataFrame that would not fit in memory; the catalog's
    `sail_pipeline.glue.io.ParquetTableDataset` moves the file to its own path (it knows this class
    by its shape, `io.FinishedParquet`, not by import).
    """

    path: Path
    num_rows: int

    def __len__(self) -> int:
        return self.num_rows

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.path, columns=columns)


@cache
def _memory_pool() -> pa.MemoryPool:
    # Arrow's default pool here (mimalloc) keeps freed row-group buffers cached; jemalloc
    # hands them back (the 10,000-file benchmark's peak: 225 → 216 MiB).
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it (Windows)
        return pa.system_memory_pool()


class _PartWriter:
    """Rows appended to a Parquet file as row groups; beside its path until `close`."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        # Where `close` copies the rows that were not withdrawn, if any was.
        self.filtered = path.with_name(f".{path.name}.filtered-{os.getpid()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._schema = schema
        self._writer = self._open(self.partial)
        self.rows = 0

    def _open(self, where: Path) -> pq.ParquetWriter:
        # PNG bytes are compressed and all distinct already: dictionary and snappy pages over
        # them only cost time and buffers (that peak again: 216 → 202 MiB).
        binary = [field.name for field in self._schema if field.type == pa.binary()]
        names = self._schema.names
        return pq.ParquetWriter(
            where, self._schema, memory_pool=_memory_pool(),
            use_dictionary=[name for name in names if name not in binary],
            compression={name: "none" if name in binary else "snappy" for name in names})

    def write(self, rows: list[Row]) -> None:
        columns = [pa.array([row[field.name] for row in rows], type=field.type,
                            memory_pool=_memory_pool()) for field in self._schema]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self._schema))
        self.rows += len(rows)

    def close(self, withdrawn: set[str] | None = None) -> ParquetTable:
        """The file at its path; the rows whose `id` is in `withdrawn` left out."""
        self._writer.close()
        if withdrawn:
            self._copy_without(withdrawn)
        os.replace(self.partial, self.path)
        return ParquetTable(self.path, self.rows)

    def _copy_without(self, withdrawn: set[str]) -> None:
        # A row group at a time: memory holds one hand-over of rows, as while writing.
        dropped = pa.array(sorted(withdrawn), type=self._schema.field("id").type)
        rows = 0
        with pq.ParquetFile(self.partial) as source, self._open(self.filtered) as writer:
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                table = table.filter(pc.invert(pc.is_in(table["id"], value_set=dropped)))
                if table.num_rows:
                    writer.write_table(table)
                    rows += table.num_rows
        os.replace(self.filtered, self.partial)
        self.rows = rows

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.partial.unlink(missing_ok=True)
            self.filtered.unlink(missing_ok=True)


class ParquetSink:
    """Kept rows to `manifest_path`, quarantined rows to `quarantine_path`, as they come.

    Each file appears whole at `close` (it is written beside its path until then); `abort`
    leaves neither behind.
    """

    def __init__(self, manifest_path: str | Path, quarantine_path: str | Path) -> None:
        self._manifest = _PartWriter(Path(manifest_path), MANIFEST_SCHEMA)
        try:
            self._quarantine = _PartWriter(Path(quarantine_path), QUARANTINE_SCHEMA)
        except BaseException:
            self._manifest.abort()
            raise
        self._withdrawn: set[str] = set()

    def write(self, kept: list[Row], quarantined: list[Row]) -> None:
        if kept:
            self._manifest.write(kept)
        if quarantined:
            self._quarantine.write(quarantined)

    def withdraw(self, record_id: str) -> None:
        self._withdrawn.add(record_id)

    def close(self) -> tuple[ParquetTable, ParquetTable]:
        try:
            return self._manifest.close(self._withdrawn), self._quarantine.close()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for writer in (self._manifest, self._quarantine):
            writer.abort()
