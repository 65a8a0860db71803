"""Readers: each source kind becomes a stream of raw records, and never raises on bad input."""

from __future__ import annotations

import bisect
import glob
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from sail_pipeline.curation.formats import (
    readable_extensions,
    readable_formats,
    readable_member_suffixes,
)
from sail_pipeline.curation.reasons import Reason
from sail_pipeline.schema import (
    FolderSource,
    LlavaSource,
    ParquetSource,
    SourceSpec,
    WebDatasetSource,
    WorldSource,
)

# The token and the whitespace around it, so "a <image> b" reads "a b", not "a  b".
_IMAGE_TOKEN = re.compile(r"\s*<image>\s*")


@dataclass(frozen=True)
class RecordError:
    """Something the reader hit; the record is quarantined with this reason."""

    reason: Reason
    detail: str


@dataclass
class RawRecord:
    """One input record before validation: image bytes, or a path to read them from."""

    source: str
    source_id: str
    data: bytes | None = None
    path: str | None = None
    alt_text_raw: bytes | str | None = None
    error: RecordError | None = None

    @property
    def id(self) -> str:
        # Derived from the source alone, so it survives re-runs and reordering of sources.
        return f"{self.source}:{self.source_id}"


def _failed(source: str, source_id: str, reason: Reason, detail: str) -> RawRecord:
    return RawRecord(source, source_id, error=RecordError(reason, detail))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# --- folder ----------------------------------------------------------------------------------


OnTotal = Callable[[str, int], None]


def _walk(root: Path, recursive: bool) -> Iterator[tuple[str, str, list[str]]]:
    """Every file under `root` that is not a directory, as pathlib's sorted (r)glob("*") has
    them: (folder, name, the sorted names of the files in that folder).

    pathlib sorts paths part by part, which is a depth-first walk that sorts each folder's
    entries by name and enters a subfolder where its name falls. So one folder's listing is
    held per level, not the whole tree: memory grows with the largest folder, not with the
    number of files. As pathlib: symlinked folders are not entered, unreadable folders list as
    empty, and a dangling symlink counts (it ends as missing_file).
    """
    stack = [_entries(root, "", recursive)]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            continue
        folder, name, names = step
        if name is None:  # a subfolder, entered where its name sorts
            stack.append(_entries(root, folder, recursive))
        else:
            yield folder, name, names


def _entries(root: Path, folder: str, recursive: bool
             ) -> Iterator[tuple[str, str | None, list[str]]]:
    """One folder's files, (folder, name, its files' names), and its subfolders,
    (folder/name/, None, []), in name order."""
    files: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(root / folder if folder else root) as entries:
            for entry in entries:
                if not _is_dir(entry):
                    files.append(entry.name)
                elif recursive and not entry.is_symlink():
                    folders.append(entry.name)
    except PermissionError:
        return
    files.sort()
    subfolders = iter(sorted(folders))
    following = next(subfolders, None)
    for name in files:
        while following is not None and following < name:
            yield f"{folder}{following}/", None, []
            following = next(subfolders, None)
        yield folder, name, files
    while following is not None:
        yield f"{folder}{following}/", None, []
        following = next(subfolders, None)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a symlink, as Path.is_dir
    except OSError:
        return False


def _is_sidecar(names: list[str], name: str, suffix: str, extensions: frozenset[str]) -> bool:
    """Whether `name` is `image.with_suffix(suffix)` of an image file among `names` (sorted)."""
    if not name.endswith(suffix):
        return False
    stem = name[:len(name) - len(suffix)]
    # The image's name is the stem itself (no suffix, when "" is an extension) or the stem, a
    # dot and a suffix: all sort together, from the stem on.
    at = bisect.bisect_left(names, stem)
    while at < len(names) and names[at].startswith(stem):
        candidate = PurePosixPath(names[at])
        if candidate.stem == stem and candidate.suffix.lower() in extensions:
            return True
        at += 1
    return False


def read_folder(spec: FolderSource, on_total: OnTotal | None = None) -> Iterator[RawRecord]:
    """Every file under the folder is one record: an image (with its sidecar's alt-text), or
    quarantined as `unsupported`, so that nothing in a source folder goes unaccounted for.

    `on_total(source, n)` hears the number of records, from a first walk of the folder.
    """
    root = Path(spec.path)
    if not root.is_dir():
        yield _failed(spec.name, str(root), Reason.MISSING_FILE, f"folder {root} does not exist")
        return
    if spec.extensions is not None:
        extensions = frozenset(e.lower() for e in spec.extensions)
        read = f"{sorted(spec.extensions)}"
    else:
        extensions, read = readable_extensions(), "every format this machine's Pillow reads"

    def skipped(name: str, names: list[str]) -> bool:  # a sidecar, read with its image
        return PurePosixPath(name).suffix.lower() not in extensions and \
            _is_sidecar(names, name, spec.alt_text_suffix, extensions)

    if on_total is not None:
        on_total(spec.name, sum(not skipped(name, names)
                                for _, name, names in _walk(root, spec.recursive)))
    # Sorted so that "first occurrence" in dedup means the same file on every machine. Anything
    # that is not a directory counts, so a dangling symlink shows up as missing, not nowhere.
    for folder, name, names in _walk(root, spec.recursive):
        source_id = folder + name
        suffix = PurePosixPath(name).suffix
        if suffix.lower() in extensions:
            yield _folder_image(spec, root / source_id, source_id)
        elif skipped(name, names):
            continue
        elif suffix == spec.alt_text_suffix:
            yield _failed(spec.name, source_id, Reason.UNSUPPORTED,
                          "an alt-text sidecar with no image beside it")
        elif spec.extensions is None and _pillow_reads(root / source_id):
            # A format Pillow reads under a name it does not know (a SPIDER file, a PNG saved
            # as .dat): kept for what it is, not for what it is called.
            yield _folder_image(spec, root / source_id, source_id)
        else:
            yield _failed(spec.name, source_id, Reason.UNSUPPORTED,
                          f"extension {suffix or '(none)'!r}, and not an image format "
                          f"read here (read: {read})")


def _pillow_reads(file: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(file, formats=list(readable_formats())):
            return True  # the header only: the decode and its checks come in validation
    except Exception:
        return False


def _folder_image(spec: FolderSource, file: Path, source_id: str) -> RawRecord:
    sidecar = file.with_suffix(spec.alt_text_suffix)
    alt: bytes | None = None
    try:
        if sidecar.is_file():
            alt = sidecar.read_bytes()
    except OSError as exc:
        return _failed(spec.name, source_id, Reason.READER_ERROR,
                       f"sidecar {sidecar.name}: {_describe(exc)}")
    return RawRecord(spec.name, source_id, path=str(file), alt_text_raw=alt)


# --- webdataset ------------------------------------------------------------------------------


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset convention: the key ends at the first dot of the basename."""
    # "./a.jpg" (from `tar cf x.tar ./`) and "a.jpg" are the same sample.
    directory, _, base = name.removeprefix("./").rpartition("/")
    stem, _, ext = base.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, ext.lower()


def _caption_from_json(raw: bytes) -> bytes | str | None:
    meta = json.loads(raw)
    caption = meta.get("caption") if isinstance(meta, dict) else None
    if caption is not None and not isinstance(caption, str):
        raise ValueError(f"json caption is a {type(caption).__name__}, not a string")
    return caption


def _read_shard(spec: WebDatasetSource, shard: Path) -> Iterator[RawRecord]:
    try:
        archive = tarfile.open(shard, mode="r:*")
    except (OSError, tarfile.TarError, EOFError) as exc:
        yield _failed(spec.name, shard.name, Reason.READER_ERROR,
                      f"shard {shard} is not a readable tar: {_describe(exc)}")
        return
    with archive:
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        index_error: str | None = None
        try:
            # Grouping over the whole index, not adjacent members, tolerates unordered shards.
            for member in archive:
                if member.isfile():
                    key, ext = _split_member(member.name)
                    groups.setdefault(key, {}).setdefault(ext, member)
        except (OSError, tarfile.TarError, EOFError) as exc:
            index_error = f"shard {shard} unreadable after {len(groups)} samples: {_describe(exc)}"
        for key, members in groups.items():
            yield _read_sample(spec, archive, key, members)
        if index_error is not None:
            yield _failed(spec.name, shard.name, Reason.READER_ERROR, index_error)


def _read_sample(spec: WebDatasetSource, archive: tarfile.TarFile, key: str,
                 members: dict[str, tarfile.TarInfo]) -> RawRecord:
    readable = spec.image_extensions if spec.image_extensions is not None else \
        readable_member_suffixes()
    image_ext = next((e for e in readable if e in members), None)
    if image_ext is None:
        return _failed(spec.name, key, Reason.NO_IMAGE,
                       f"sample has no image member (members: {sorted(members)})")
    try:
        data = _member_bytes(archive, members[image_ext])
        alt: bytes | str | None = None
        if "txt" in members:
            alt = _member_bytes(archive, members["txt"])
        elif "json" in members:
            alt = _caption_from_json(_member_bytes(archive, members["json"]))
    except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
        return _failed(spec.name, key, Reason.READER_ERROR, f"member of {key}: {_describe(exc)}")
    return RawRecord(spec.name, key, data=data, alt_text_raw=alt)


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise tarfile.TarError(f"{member.name} has no data")
    data = handle.read()
    # A cut shard can hand back fewer bytes than the header promises instead of raising.
    if len(data) != member.size:
        raise EOFError(f"{member.name}: read {len(data)} of {member.size} bytes")
    return data


def read_webdataset(spec: WebDatasetSource) -> Iterator[RawRecord]:
    shards = sorted(Path(p) for p in glob.glob(spec.shards, recursive=True))
    if not shards:
        yield _failed(spec.name, spec.shards, Reason.MISSING_FILE,
                      f"no shard matches {spec.shards!r}")
        return
    for shard in shards:
        yield from _read_shard(spec, shard)


# --- parquet ---------------------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    # None, NaN, pd.NA or NaT, whichever a table library chose for "missing".
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def _parquet_record(spec: ParquetSource, base: Path, row: dict[str, Any], index: int
                    ) -> RawRecord:
    alt = row.get(spec.alt_text_column) if spec.alt_text_column else None
    alt = None if _is_null(alt) else alt
    if alt is not None and not isinstance(alt, (str, bytes)):
        alt = str(alt)
    if spec.path_column is not None:
        rel = row.get(spec.path_column)
        default_id = str(index) if _is_null(rel) else str(rel)
    else:
        rel = None
        default_id = str(index)
    if spec.id_column is not None:
        raw_id = row.get(spec.id_column)
        if _is_null(raw_id):
            return _failed(spec.name, f"row-{index}", Reason.READER_ERROR,
                           f"row {index} has a null {spec.id_column!r}")
        source_id = str(raw_id)
    else:
        # Paths are stable under row reordering; bare bytes only have their row number.
        source_id = default_id
    if spec.path_column is not None:
        if _is_null(rel):
            return _failed(spec.name, source_id, Reason.NO_IMAGE, f"row {index}: null path")
        return RawRecord(spec.name, source_id, path=str(base / str(rel)), alt_text_raw=alt)
    value = row.get(spec.image_column)
    # Hugging Face `datasets` stores its Image feature as a struct {bytes, path}.
    if isinstance(value, dict):
        value = value.get("bytes")
    if _is_null(value):
        return _failed(spec.name, source_id, Reason.NO_IMAGE, f"row {index}: null image")
    data = _as_bytes(value)
    if data is None:
        return _failed(spec.name, source_id, Reason.READER_ERROR,
                       f"row {index}: image is a {type(value).__name__}, not bytes")
    return RawRecord(spec.name, source_id, data=data, alt_text_raw=alt)


def read_parquet(spec: ParquetSource, on_total: OnTotal | None = None) -> Iterator[RawRecord]:
    path = Path(spec.path)
    wanted = [c for c in (spec.image_column, spec.path_column, spec.alt_text_column,
                          spec.id_column) if c is not None]
    try:
        file = pq.ParquetFile(path)
        missing = [c for c in wanted if c not in file.schema_arrow.names]
        if missing:
            raise KeyError(f"columns {missing} not in {path.name}")
        batches = file.iter_batches(batch_size=spec.batch_size, columns=list(dict.fromkeys(wanted)))
    except (OSError, KeyError, ValueError) as exc:
        reason = Reason.MISSING_FILE if isinstance(exc, FileNotFoundError) else Reason.READER_ERROR
        yield _failed(spec.name, path.name, reason, f"parquet {path}: {_describe(exc)}")
        return
    if on_total is not None:
        on_total(spec.name, file.metadata.num_rows)
    index = 0
    try:
        for batch in batches:
            for row in batch.to_pylist():
                yield _parquet_record(spec, path.parent, row, index)
                index += 1
    except (OSError, ValueError) as exc:
        yield _failed(spec.name, path.name, Reason.READER_ERROR,
                      f"parquet {path} unreadable after row {index}: {_describe(exc)}")


# --- llava -----------------------------------------------------------------------------------


def _first_gpt_reply(conversations: Any) -> str | None:
    if not isinstance(conversations, list):
        return None
    for turn in conversations:
        if isinstance(turn, dict) and turn.get("from") == "gpt":
            value = turn.get("value")
            if isinstance(value, str):
                return _IMAGE_TOKEN.sub(" ", value).strip()
            return None
    return None


def _llava_record(spec: LlavaSource, folder: Path, entry: Any, index: int) -> RawRecord:
    if not isinstance(entry, dict):
        return _failed(spec.name, f"#{index}", Reason.READER_ERROR,
                       f"entry {index} is a {type(entry).__name__}, not an object")
    raw_id = entry.get("id")
    source_id = f"#{index}" if raw_id is None else str(raw_id)
    image = entry.get("image")
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    if image is None:
        return _failed(spec.name, source_id, Reason.NO_IMAGE, "text-only entry (no `image`)")
    if not isinstance(image, str):
        return _failed(spec.name, source_id, Reason.READER_ERROR,
                       f"`image` must be one relative path, got {type(image).__name__}")
    alt = _first_gpt_reply(entry.get("conversations"))
    return RawRecord(spec.name, source_id, path=str(folder / image), alt_text_raw=alt)


def read_llava(spec: LlavaSource, on_total: OnTotal | None = None) -> Iterator[RawRecord]:
    path = Path(spec.path)
    try:
        # The stdlib has no streaming JSON parser; LLaVA files fit in memory in practice.
        entries = json.loads(path.read_bytes())
        if not isinstance(entries, list):
            raise ValueError(f"top level is a {type(entries).__name__}, not a list")
    except (OSError, ValueError) as exc:
        reason = Reason.MISSING_FILE if isinstance(exc, FileNotFoundError) else Reason.READER_ERROR
        yield _failed(spec.name, path.name, reason, f"llava json {path}: {_describe(exc)}")
        return
    if on_total is not None:
        on_total(spec.name, len(entries))
    folder = Path(spec.image_folder)
    for index, entry in enumerate(entries):
        yield _llava_record(spec, folder, entry, index)


# --- world -----------------------------------------------------------------------------------


def read_world(spec: WorldSource, scenes: pd.DataFrame, on_total: OnTotal | None = None
               ) -> Iterator[RawRecord]:
    missing = [c for c in ("id", "image", "alt_text") if c not in scenes.columns]
    if missing:
        yield _failed(spec.name, "scenes", Reason.READER_ERROR,
                      f"world scene table lacks columns {missing}")
        return
    if "split" in scenes.columns:
        scenes = scenes[scenes["split"].isin(spec.splits)]
    if on_total is not None:
        on_total(spec.name, len(scenes))
    for scene_id, image, alt in zip(scenes["id"], scenes["image"], scenes["alt_text"],
                                    strict=True):
        data = None if _is_null(image) else _as_bytes(image)
        if data is None:
            yield _failed(spec.name, str(scene_id), Reason.NO_IMAGE,
                          f"image is {type(image).__name__}, not bytes")
            continue
        yield RawRecord(spec.name, str(scene_id), data=data,
                        alt_text_raw=None if _is_null(alt) else alt)


def world_values(sources: list[SourceSpec], scenes: pd.DataFrame | None, column: str
                 ) -> dict[str, Any]:
    """A column of the world's scenes (`ground_truth`, `reference_caption`) by the pool id
    curation gives each scene; empty when no source reads the world."""
    values: dict[str, Any] = {}
    for spec in sources:
        if isinstance(spec, WorldSource) and scenes is not None:
            values.update(zip(RawRecord(spec.name, "").id + scenes["id"].astype(str),
                              scenes[column], strict=True))
    return values


# --- dispatch --------------------------------------------------------------------------------


def iter_records(spec: SourceSpec, world_scenes: pd.DataFrame | None = None,
                 on_total: OnTotal | None = None) -> Iterator[RawRecord]:
    """Every raw record of one source, in a deterministic order.

    A reader bug or an unforeseen failure ends the source with one quarantined record instead
    of crashing the run, so the accounting still holds. `on_total(source, n)` hears how many
    records a source holds where its reader learns it before reading them (all but
    WebDataset); a progress bar's total, not a promise (a reader error adds a record).
    """
    count = 0
    try:
        for record in _reader(spec, world_scenes, on_total):
            count += 1
            yield record
    except Exception as exc:  # the house rule: bad input never crashes a run
        yield _failed(spec.name, f"!reader-{count}", Reason.READER_ERROR,
                      f"{spec.kind} reader stopped after {count} records: {_describe(exc)}")


def _reader(spec: SourceSpec, world_scenes: pd.DataFrame | None, on_total: OnTotal | None
            ) -> Iterator[RawRecord]:
    if isinstance(spec, FolderSource):
        return read_folder(spec, on_total)
    if isinstance(spec, WebDatasetSource):
        return read_webdataset(spec)
    if isinstance(spec, ParquetSource):
        return read_parquet(spec, on_total)
    if isinstance(spec, LlavaSource):
        return read_llava(spec, on_total)
    if world_scenes is None:
        raise ValueError("a `world` source needs the scene table (world_scenes)")
    return read_world(spec, world_scenes, on_total)
