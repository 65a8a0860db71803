"""Kedro datasets that hand *paths* to the next stage, so DeepSpeed's processes read the files.

A table goes in as a DataFrame and comes out as its Parquet path; a tokenizer goes in as an
object with `save_pretrained` and comes out as its directory. Loading never copies data into
the Kedro process, which is what lets the same pipeline run on data that does not fit in it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset

from sail_pipeline import run_telemetry
from sail_pipeline.glue.dry_run import NOT_RUN


class _PathDataset(AbstractDataset[Any, str]):
    # What the next node receives: the file's path (not the object saved).
    loads_as_path = True

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> str:
        if not self._exists():
            raise DatasetError(f"{self._filepath} does not exist: run the pipeline that makes it "
                               f"first (e.g. `kedro run --pipelines=data`)")
        return str(self._filepath.resolve())

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class ParquetPathDataset(_PathDataset):
    def _save(self, data: pd.DataFrame) -> None:
        if not isinstance(data, pd.DataFrame):
            raise DatasetError(f"{self._filepath}: expected a DataFrame, got {type(data).__name__}")
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        data.to_parquet(self._filepath, index=False)


@runtime_checkable
class FinishedParquet(Protocol):
    """A Parquet file written whole elsewhere, e.g. `sail_pipeline.curation.ParquetTable`.

    Matched by shape, so that this module (imported by every stage) does not import the
    library that makes it, nor make every stage depend on it.
    """

    path: Path
    num_rows: int


class ParquetTableDataset(ParquetPathDataset):
    """A Parquet table that loads as a DataFrame, as `pandas.ParquetDataset` does, and saves a
    DataFrame or a Parquet file a node streamed into its working folder (`FinishedParquet`).
    That file is moved here, not read: a node can write a table it could never hold
    (curation's manifest of every kept image) while the nodes after it load it as before.
    """

    loads_as_path = False

    def _load(self) -> pd.DataFrame:  # type: ignore[override]
        super()._load()  # says which pipeline makes it, when it is missing
        return pd.read_parquet(self._filepath)

    def _save(self, data: Any) -> None:
        if not isinstance(data, FinishedParquet):
            super()._save(data)
            return
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        # A rename within one file system; across two, a copy (then the source is removed).
        shutil.move(data.path, self._filepath)


class PretrainedDirDataset(_PathDataset):
    def _save(self, data: Any) -> None:
        if not hasattr(data, "save_pretrained"):
            raise DatasetError(f"{self._filepath}: {type(data).__name__} has no save_pretrained")
        if self._filepath.exists():
            shutil.rmtree(self._filepath)
        data.save_pretrained(str(self._filepath))


class OptionalParquetDataset(ParquetPathDataset):
    """A Parquet table that loads as a DataFrame, or as None when it has not been made.

    The curation node takes the world's scene table as an input, so that in one run it waits
    for the data pipeline to write it; a curation of the user's own folders, with no world
    source, must still run where the world was never generated.
    """

    loads_as_path = False

    def _load(self) -> pd.DataFrame | None:  # type: ignore[override]
        return pd.read_parquet(self._filepath) if self._exists() else None


class FolderDataset(AbstractDataset[None, str]):
    """A folder a node writes into (a stage's checkpoints, a shard folder): loads as its path.

    The catalog owns every path; a node that needs a working folder takes one of these as an
    input instead of naming a folder itself.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def _load(self) -> str:
        return str(self._path.resolve())

    def _save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is a folder nodes write into, not an output")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class ModelPointerDataset(JSONDataset):
    """A stage's pointer ({hf_dir, run_dir, summary}) with its folders stored relative to it.

    A checkpoint inside the pointer's folder is written as a relative path and loaded as an
    absolute one, so a project that is moved, copied or checked out by `dvc exp run` in a temp
    folder points at its own checkpoints, never at the folder it was trained in. A user's own
    weights elsewhere stay absolute.
    """

    _PATH_KEYS = ("hf_dir", "run_dir")

    def _folder(self) -> Path:
        return Path(self._filepath).parent.resolve()

    def save(self, data: dict[str, Any]) -> None:
        folder = self._folder()
        stored = dict(data)
        for key in self._PATH_KEYS:
            if stored.get(key) is not None and Path(stored[key]).resolve().is_relative_to(folder):
                stored[key] = Path(stored[key]).resolve().relative_to(folder).as_posix()
        measured: dict[str, Any] = {}
        if isinstance(stored.get("summary"), dict):
            # The summary repeated the absolute folders; the pointer's own keys are the truth.
            # Its timings go beside it (`telemetry`), out of what DVC hashes.
            stored["summary"], measured = run_telemetry.split(
                {k: v for k, v in stored["summary"].items() if k not in self._PATH_KEYS})
        super().save(stored)
        run_telemetry.telemetry_path(self._filepath).write_text(json.dumps(measured, indent=2))

    def load(self) -> dict[str, Any]:
        data = super().load()
        extra = run_telemetry.telemetry_path(self._filepath)
        if isinstance(data.get("summary"), dict) and extra.exists():
            data["summary"] |= json.loads(extra.read_text())
        folder = self._folder()
        for key in self._PATH_KEYS:
            if data.get(key) is not None and not Path(data[key]).is_absolute():
                data[key] = str(folder / data[key])
        return data


class OptionalJSONDataset(JSONDataset):
    """A JSON file that loads as None when it has not been written: a sweep's fit gathers the
    points that finished and names the ones that did not."""

    def load(self) -> Any:
        return super().load() if self._exists() else None


class OptionalCSVDataset(CSVDataset):
    """A CSV table that loads as None when it has not been made (a sweep's pool accounting,
    which a fit of no finished point, or a dry run, may not have)."""

    def load(self) -> pd.DataFrame | None:  # type: ignore[override]
        return super().load() if self._exists() else None


_NOTHING = object()


class DryRunDataset(AbstractDataset[Any, Any]):
    """A dataset during a dry run: saves into memory only, so nothing on disk changes; loads
    what this run saved, else the wrapped dataset's data."""

    def __init__(self, wrapped: AbstractDataset) -> None:
        self._wrapped = wrapped
        self._data: Any = _NOTHING

    def _load(self) -> Any:
        as_path = getattr(self._wrapped, "loads_as_path", False)
        if self._data is _NOTHING:
            try:
                return self._wrapped.load()
            except (DatasetError, OSError):
                # Neither this run nor an earlier one made it (a dry run on a fresh clone).
                if not as_path:
                    return NOT_RUN
        if as_path:
            # It loads as the path a real run would write: what the next dry stage names.
            return str(self._wrapped._filepath.resolve())
        return self._data

    def _save(self, data: Any) -> None:
        self._data = data

    def _exists(self) -> bool:
        return self._data is not _NOTHING or self._wrapped.exists()

    def _describe(self) -> dict[str, Any]:
        return {"dry_run_of": type(self._wrapped).__name__}


class LoadedOnce(AbstractDataset[Any, Any]):
    """A dataset whose load is kept in memory until it is saved again or released: what a
    sweep's point nodes share (`glue.hooks.SharedInputsHook`). Unlike Kedro's `CachedDataset`
    it never caches what is saved, which for a path dataset (a DataFrame in, its path out)
    would hand the next node a DataFrame where it reads a path."""

    def __init__(self, wrapped: AbstractDataset) -> None:
        self._wrapped = wrapped
        self._data: Any = _NOTHING

    def __getattr__(self, name: str) -> Any:
        # What others ask of the wrapped dataset (a dry run: `loads_as_path`, `_filepath`).
        if name == "_wrapped":
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    def _load(self) -> Any:
        if self._data is _NOTHING:
            self._data = self._wrapped.load()
        return self._data

    def _save(self, data: Any) -> None:
        self._data = _NOTHING
        self._wrapped.save(data)

    def _exists(self) -> bool:
        return self._data is not _NOTHING or self._wrapped.exists()

    def _release(self) -> None:
        self._data = _NOTHING
        self._wrapped.release()

    def _describe(self) -> dict[str, Any]:
        return {"loaded_once": type(self._wrapped).__name__}
