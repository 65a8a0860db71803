"""tools/same_numbers.py, the check behind the README's "same numbers" table, can fail: a
single changed digit of a score is found and named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("same_numbers", ROOT / "tools/same_numbers.py")
same_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(same_numbers)


def _scores(folder: Path, score: float, identity: str = "y") -> Path:
    path = folder / "scores.csv"
    folder.mkdir()
    pd.DataFrame({"checkpoint": ["advance", "preference"], "task": ["average", "average"],
                  "score": [0.10598075168668775, score], "identity": ["x", identity],
                  "reused": [False, True]}).to_csv(path, index=False)
    return path


def test_a_changed_digit_is_a_difference_and_run_columns_are_not(tmp_path):
    before = _scores(tmp_path / "a", 0.4820311)
    same = _scores(tmp_path / "b", 0.4820311, identity="another point")  # reused or not
    other = _scores(tmp_path / "c", 0.4820312)
    keys = ["checkpoint", "task"]
    assert same_numbers.compare_table(before, same, keys) == (2, [])
    compared, problems = same_numbers.compare_table(before, other, keys)
    assert compared == 2 and problems == [
        "('preference', 'average') score: 0.4820311 -> 0.4820312"]
