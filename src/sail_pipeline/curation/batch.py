"""Curation's per-record work as a batch function: load, hash, decode, normalise, pHash, PNG.

A row's result depends on its own record alone, so batches may run in any process, in any
order (`sail_pipeline.executors`: in-process or on Ray). Whatever depends on earlier records
(duplicate ids, exact and near dedup) is decided afterwards, in input order, by `funnel`.

Rows are plain values (bytes, str, int, None) so that a batch crosses to a Ray worker as Arrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sail_pipeline.curation.dedup import hash_hex, phash
from sail_pipeline.curation.reasons import Rejection
from sail_pipeline.curation.sources import RawRecord
from sail_pipeline.curation.validate import check_image, encode_png, prepare
from sail_pipeline.schema import CurationFilterParams

# Alt-text arrives as bytes (sidecars, tar members) or as str (JSON, Parquet); an Arrow column
# holds one type, and which one it was matters (bytes are decoded strictly), so two columns.
RAW_COLUMNS = ["source", "source_id", "data", "path", "alt_text_bytes", "alt_text_str"]
# sha256 is None: the record failed before its bytes were hashed (reason, detail say why).
# sha256 set and reason set: the image itself failed. reason None: a valid, normalised image.
CHECKED_COLUMNS = ["sha256", "reason", "detail", "alt_text", "phash", "width", "height",
                   "format", "mode_in", "normalised", "image"]


def raw_table(records: Sequence[RawRecord]) -> pd.DataFrame:
    """Records without a reader error, one row each, as `check_batch` takes them."""
    rows = [(r.source, r.source_id, r.data, r.path,
             r.alt_text_raw if isinstance(r.alt_text_raw, bytes) else None,
             r.alt_text_raw if isinstance(r.alt_text_raw, str) else None) for r in records]
    return pd.DataFrame({name: pd.Series([row[i] for row in rows], dtype=object)
                         for i, name in enumerate(RAW_COLUMNS)})


def _record(row: dict[str, Any]) -> RawRecord:
    alt = row["alt_text_bytes"] if row["alt_text_bytes"] is not None else row["alt_text_str"]
    return RawRecord(row["source"], row["source_id"], data=row["data"], path=row["path"],
                     alt_text_raw=alt)


def _check(data: bytes, settings: CurationFilterParams) -> dict[str, Any]:
    try:
        valid = check_image(data, settings)
    except Rejection as rejection:
        return {"reason": rejection.reason.value, "detail": rejection.detail}
    return {"phash": hash_hex(phash(valid.image)), "width": valid.width,
            "height": valid.height, "format": valid.format, "mode_in": valid.mode_in,
            "notes": [note.value for note in valid.notes], "image": encode_png(valid.image)}


def check_batch(batch: pd.DataFrame, settings: CurationFilterParams) -> pd.DataFrame:
    """Each raw record (RAW_COLUMNS) → its checked row (CHECKED_COLUMNS), in order."""
    # Identical bytes decode identically: a copy within the batch is decoded once. The
    # driver rejects it as an exact duplicate anyway when the first copy is kept.
    images: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for raw in batch.to_dict("records"):
        row = dict.fromkeys(CHECKED_COLUMNS)
        try:
            prepared = prepare(_record(raw), settings)
        except Rejection as rejection:
            row |= {"reason": rejection.reason.value, "detail": rejection.detail}
            rows.append(row)
            continue
        if prepared.sha256 not in images:
            images[prepared.sha256] = _check(prepared.data, settings)
        image = dict(images[prepared.sha256])
        # Image notes first, then alt-text notes: the order the manifest has always had.
        notes = image.pop("notes", []) + [note.value for note in prepared.notes]
        row |= image | {"sha256": prepared.sha256, "alt_text": prepared.alt_text}
        if row["reason"] is None:
            row["normalised"] = ";".join(notes)
        rows.append(row)
    return pd.DataFrame({name: pd.Series([row[name] for row in rows], dtype=object)
                         for name in CHECKED_COLUMNS})
