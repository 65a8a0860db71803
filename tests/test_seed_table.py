"""tools/seed_table.py: mean ± sd over seeds of evaluation score tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _scores(path: Path, caption: float, average: float) -> None:
    pd.DataFrame({"checkpoint": ["preference"] * 2, "task": ["world_caption", "average"],
                  "score": [caption, average], "chance": [None, None],
                  "n_samples": [300, 600]}).to_csv(path, index=False)


def test_seed_table_prints_mean_and_spread_per_run_and_checkpoint(tmp_path):
    for seed, (caption, average) in enumerate([(0.6, 0.50), (0.7, 0.52), (0.8, 0.54)]):
        _scores(tmp_path / f"after_s{seed}.csv", caption, average)
    _scores(tmp_path / "before_s0.csv", 0.1, 0.40)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/seed_table.py"), f"before={tmp_path}/before_s*.csv",
         f"after={tmp_path}/after_s*.csv"], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| run | checkpoint | seeds | caption | average |"
    assert lines[2] == "| before | preference | 1 | 0.10 ± 0.00 | 40.0 ± 0.0 |"
    assert lines[3] == "| after | preference | 3 | 0.70 ± 0.10 | 52.0 ± 2.0 |"
    missing = subprocess.run([sys.executable, str(ROOT / "tools/seed_table.py"),
                              f"x={tmp_path}/none*.csv"], capture_output=True, text=True)
    assert missing.returncode == 2 and "matching at least one CSV" in missing.stderr
