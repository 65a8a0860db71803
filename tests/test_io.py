"""The catalog's own datasets: what they store on disk and what the next node receives."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from kedro.io import DatasetError

from sail_pipeline.glue.io import (
    DryRunDataset,
    FolderDataset,
    ModelPointerDataset,
    ParquetPathDataset,
)


def _pointer(root):
    folder = root / "data/06_models/knowledge"
    (folder / "hf").mkdir(parents=True)
    return folder, {"hf_dir": str(folder / "hf"), "run_dir": str(folder),
                    "summary": {"stage": "knowledge", "hf_dir": str(folder / "hf"), "steps": 3}}


def test_model_pointer_follows_a_moved_project(tmp_path):
    folder, pointer = _pointer(tmp_path / "before")
    ModelPointerDataset(filepath=str(folder / "model.json")).save(pointer)
    stored = json.loads((folder / "model.json").read_text())
    assert stored["hf_dir"] == "hf" and stored["run_dir"] == "."
    assert "hf_dir" not in stored["summary"] and stored["summary"]["steps"] == 3

    shutil.move(tmp_path / "before", tmp_path / "after")
    moved = tmp_path / "after/data/06_models/knowledge"
    loaded = ModelPointerDataset(filepath=str(moved / "model.json")).load()
    assert loaded["hf_dir"] == str((moved / "hf").resolve())
    assert loaded["run_dir"] == str(moved.resolve())


def test_model_pointer_keeps_a_users_own_weights_absolute(tmp_path):
    own = tmp_path / "elsewhere/my-llm"
    own.mkdir(parents=True)
    target = tmp_path / "data/06_models/llm/model.json"
    dataset = ModelPointerDataset(filepath=str(target))
    dataset.save({"hf_dir": str(own), "run_dir": None, "summary": {"source": "path"}})
    assert json.loads(target.read_text())["hf_dir"] == str(own)
    assert dataset.load()["hf_dir"] == str(own) and dataset.load()["run_dir"] is None


def test_parquet_path_dataset_hands_over_its_path_and_names_the_missing_file(tmp_path):
    dataset = ParquetPathDataset(filepath=str(tmp_path / "t.parquet"))
    with pytest.raises(DatasetError, match="t.parquet does not exist"):
        dataset.load()
    dataset.save(pd.DataFrame({"a": [1]}))
    assert dataset.load() == str((tmp_path / "t.parquet").resolve())
    with pytest.raises(DatasetError, match="expected a DataFrame"):
        dataset.save([1, 2])


def test_dry_run_writes_nothing_and_names_the_would_be_path(tmp_path):
    wrapped = ParquetPathDataset(filepath=str(tmp_path / "t.parquet"))
    dry = DryRunDataset(wrapped)
    dry.save(pd.DataFrame({"a": [1]}))
    assert not (tmp_path / "t.parquet").exists()
    assert dry.load() == str((tmp_path / "t.parquet").resolve()) and dry.exists()


def test_folder_dataset_is_an_input_only(tmp_path):
    folder = FolderDataset(path=str(tmp_path / "work"))
    assert folder.load() == str((tmp_path / "work").resolve()) and not folder.exists()
    with pytest.raises(DatasetError, match="not an output"):
        folder.save("checkpoints")
