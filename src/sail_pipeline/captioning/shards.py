"""Caption shards on disk: atomic writes, and the one final view a resumed run starts from.

A recaptioning run writes `captions-00000.parquet`, `captions-00001.parquet`, ... (columns
`id, caption, prompt_kind, backend`) and, for shards with failures, `failures-XXXXX.parquet`
(`id, error`) with the same index. Each file is written to `.<name>.tmp` and renamed into
place, so a killed run never leaves a half-written shard under a final name; the dot-prefixed
leftovers are ignored by readers and removed by the next run.

The final view: one caption per id (the first shard that has it wins; extra copies are counted
as duplicates, which only a broken writer could produce), and for ids still without a caption,
their latest failure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sail_pipeline.storage import written_whole_or_not_at_all

ShardKind = Literal["captions", "failures"]
CAPTION_COLUMNS = ["id", "caption", "prompt_kind", "backend"]
FAILURE_COLUMNS = ["id", "error"]
_COLUMNS: dict[str, list[str]] = {"captions": CAPTION_COLUMNS, "failures": FAILURE_COLUMNS}
_FINAL = re.compile(r"^(captions|failures)-(\d{5,})\.parquet$")
_TMP = re.compile(r"^\.(captions|failures)-\d{5,}\.parquet\.tmp$")


def shard_name(kind: ShardKind, index: int) -> str:
    return f"{kind}-{index:05d}.parquet"


def list_shards(out_dir: str | os.PathLike, kind: ShardKind) -> list[tuple[int, Path]]:
    """Final shards of one kind, by index (numeric: 100000 sorts after 99999)."""
    path = Path(out_dir)
    if not path.is_dir():
        return []
    found = []
    for entry in path.iterdir():
        match = _FINAL.match(entry.name)
        if match and match.group(1) == kind and entry.is_file():
            found.append((int(match.group(2)), entry))
    return sorted(found)


def next_shard_index(out_dir: str | os.PathLike) -> int:
    """One past the highest index of either kind, so a new shard never overwrites an old one."""
    indices = [i for kind in ("captions", "failures") for i, _ in list_shards(out_dir, kind)]
    return max(indices, default=-1) + 1


def remove_tmp_leftovers(out_dir: str | os.PathLike) -> list[Path]:
    """Delete what a killed run was writing; only safe with one run per directory at a time."""
    path = Path(out_dir)
    if not path.is_dir():
        return []
    leftovers = [entry for entry in path.iterdir() if _TMP.match(entry.name)]
    for entry in leftovers:
        entry.unlink(missing_ok=True)
    return leftovers


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable across a power cut; not every OS lets a directory open.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_shard(frame: pd.DataFrame, out_dir: str | os.PathLike, kind: ShardKind,
                index: int) -> Path:
    """Write atomically: the final name appears complete or not at all."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    final = path / shard_name(kind, index)
    if final.exists():  # a caller bug; overwriting would silently drop finished captions
        raise FileExistsError(f"{final} already exists")
    tmp = path / f".{final.name}.tmp"
    columns = _COLUMNS[kind]
    # An explicit schema: an all-None column would otherwise be stored as type null.
    schema = pa.schema([(name, pa.string()) for name in columns])
    table = pa.Table.from_pandas(frame[columns], schema=schema, preserve_index=False)
    with written_whole_or_not_at_all(final, partial=tmp), open(tmp, "wb") as handle:
        pq.write_table(table, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    _fsync_dir(path)
    return final


def _read(path: Path, kind: ShardKind) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise ValueError(f"{path} is not a readable {kind} shard ({type(error).__name__}: "
                         f"{error}); move it aside and re-run to redo its ids") from error
    missing = [c for c in _COLUMNS[kind] if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; not a {kind} shard of this format")
    return frame[_COLUMNS[kind]]


def _concat(frames: list[pd.DataFrame], kind: ShardKind) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in _COLUMNS[kind]})
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class ShardView:
    captions: pd.DataFrame  # one row per id
    failures: pd.DataFrame  # latest failure per id, only for ids without a caption
    duplicates: int  # caption rows dropped because an earlier shard had the id


def read_shards(out_dir: str | os.PathLike) -> ShardView:
    everything = _concat([_read(p, "captions") for _, p in list_shards(out_dir, "captions")],
                         "captions")
    captions = everything.drop_duplicates("id", keep="first").reset_index(drop=True)
    failures = _concat([_read(p, "failures") for _, p in list_shards(out_dir, "failures")],
                       "failures")
    # Shards are in index order, so the last row of an id is its latest attempt.
    failures = failures.drop_duplicates("id", keep="last")
    failures = failures[~failures["id"].isin(captions["id"])].reset_index(drop=True)
    return ShardView(captions, failures, len(everything) - len(captions))


def read_captions(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The final captions: one row per id (`id, caption, prompt_kind, backend`)."""
    return read_shards(out_dir).captions


def read_failures(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Ids still without a caption and why (`id, error`), latest attempt per id."""
    return read_shards(out_dir).failures
