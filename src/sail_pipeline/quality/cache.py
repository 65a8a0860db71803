"""Signals cached by (id, caption hash) under a folder named by the signal's version.

A group of signals (text, image, clip, likelihood, judge) has a version string that covers its
code and everything its values depend on (the model's weights, the judge's rubric and
endpoint). A re-run computes only the keys its folder lacks; a new model or rubric starts a
new folder, and the old one stays valid for the old settings. Parts are written under a
temporary name and renamed, so a killed run leaves only whole parts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline import identity as digests

KEY = ["id", "caption_sha"]


def caption_sha(caption: Any) -> str:
    """A stable key for a caption of any type (None and undecodable bytes included)."""
    if caption is None or (isinstance(caption, float) and caption != caption):
        return "missing"
    data = caption if isinstance(caption, bytes) else str(caption).encode("utf-8",
                                                                           "surrogatepass")
    return digests.sha256_hex(data)


def version_folder(root: str | Path, group: str, identity: Any) -> Path:
    digest = digests.repr_digest(identity, 10)
    return Path(root) / f"{group}-{digest}"


class SignalCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def load(self) -> pd.DataFrame:
        # A part a killed run was writing (one writer per folder: the run's output lock).
        for leftover in self.folder.glob(".part-*.tmp"):
            leftover.unlink(missing_ok=True)
        parts = sorted(self.folder.glob("part-*.parquet"))
        if not parts:
            return pd.DataFrame(columns=KEY)
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True
                         ).drop_duplicates(KEY, keep="last")

    def add(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # Named by what it holds, so the same run writes the same names (the cache folder is a
        # DVC output, hashed by name and bytes).
        keys = digests.payload_digest(rows[KEY].astype(str).to_numpy().tolist(), 6)
        name = f"part-{len(list(self.folder.glob('part-*.parquet'))):05d}-{keys}"
        temporary = self.folder / f".{name}.tmp"
        rows.to_parquet(temporary, index=False)
        os.replace(temporary, self.folder / f"{name}.parquet")
