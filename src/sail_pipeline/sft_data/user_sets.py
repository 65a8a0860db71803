"""A user's candidate SFT set, read into the project's conversation layout.

Entries a reader cannot turn into a conversation are not dropped: they come back as rejections
(`id`, `reason`) beside the rows, and validation judges the rest like any built-in set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline.errors import UserError
from sail_pipeline.identity import stable_int
from sail_pipeline.schema import CandidateSetParams
from sail_pipeline.sft_data.validate import CANDIDATE_COLUMNS, Rejection

_LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "system": "system"}


class CandidateSetError(UserError, ValueError):
    """A set that cannot be read at all (no file, not JSON, not a table): names the file."""


def read_user_set(name: str, spec: CandidateSetParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows as `id`, `image`, `messages`; entries rejected while reading as `id`, `reason`)."""
    path = Path(spec.path)
    if not path.is_file():
        raise CandidateSetError(f"sft.candidates.{name}.path: {path} does not exist")
    if spec.resolved_format() == "parquet":
        return _read_parquet(name, path), pd.DataFrame(columns=["id", "reason"])
    return _read_llava(name, path, Path(spec.image_folder) if spec.image_folder else path.parent)


def held_out(ids: pd.Series, one_in: int = 20) -> pd.Series:
    """Which rows of a user's set are held out: one in `one_in`, by a hash of the id (stable
    across runs and machines, and unchanged when rows are added)."""
    return ids.map(lambda i: stable_int(str(i)) % one_in == 0).astype(bool)


def _read_parquet(name: str, path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises many kinds for a bad file
        raise CandidateSetError(f"sft.candidates.{name}: {path} is not a Parquet table "
                                f"({error})") from None
    missing = [c for c in ("id", "messages") if c not in table.columns]
    if missing:
        raise CandidateSetError(f"sft.candidates.{name}: {path} lacks column(s) {missing}; "
                                f"expected id, image (bytes or null), messages (JSON)")
    if "image" not in table.columns:
        table = table.assign(image=None)
    messages = [m if isinstance(m, str) else json.dumps(_plain(m)) for m in table["messages"]]
    return table.assign(id=table["id"].astype(str), messages=messages)[CANDIDATE_COLUMNS]


def _plain(value: Any) -> Any:
    """A nested list column as Parquet returns it (numpy arrays of dicts) -> JSON-able lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _read_llava(name: str, path: Path, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CandidateSetError(f"sft.candidates.{name}: {path} is not JSON ({error})") from None
    if not isinstance(entries, list):
        raise CandidateSetError(f"sft.candidates.{name}: {path} must hold a JSON list of "
                                f"entries with `conversations`")
    rows, rejected = [], []
    for index, entry in enumerate(entries):
        entry_id = str(entry.get("id", index)) if isinstance(entry, dict) else str(index)
        converted = _llava_entry(entry, folder)
        if isinstance(converted, Rejection):
            rejected.append((entry_id, converted.value))
        else:
            rows.append((entry_id, *converted))
    return (pd.DataFrame(rows, columns=CANDIDATE_COLUMNS),
            pd.DataFrame(rejected, columns=["id", "reason"]))


def _llava_entry(entry: Any, folder: Path) -> tuple[bytes | None, str] | Rejection:
    if not isinstance(entry, dict) or not isinstance(entry.get("conversations"), list):
        return Rejection.UNREADABLE_ENTRY
    messages = []
    for turn in entry["conversations"]:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return Rejection.MESSAGES_MALFORMED
        role = _LLAVA_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            return Rejection.ROLE_UNKNOWN
        messages.append({"role": role, "content": turn["value"]})
    image = None
    if entry.get("image"):
        file = folder / str(entry["image"])
        if not file.is_file():
            return Rejection.IMAGE_MISSING
        image = file.read_bytes()
    return image, json.dumps(messages)
