"""What a run measures about itself, as opposed to what it computes.

Timings, throughput, memory peaks, logs and tracking-run ids change from one run of the same
commit and seed to the next. They are written beside a stage's outputs under the names below,
which `.dvcignore` hides from DVC, so the outputs DVC hashes are byte-identical between runs
and `dvc.lock` does not change when `make run` is repeated (`tests/test_dvc.py` checks that
.dvcignore names every one of them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Keys of a trainer's summary (and a pointer's) that are measurements of the run.
TELEMETRY_KEYS = frozenset({
    "wall_seconds", "seconds", "mean_tokens_per_s", "peak_memory_gib", "peak_rss_mb",
    "phases", "seconds_to_first_step", "resumed_at_step",
})
# Files a stage writes beside its outputs that hold only telemetry (or the ids of the MLflow
# runs it logged into, which differ every run).
TELEMETRY_FILES = ("telemetry.json", "*.telemetry.json", "train.log", "metrics.jsonl",
                   "mlflow_run.json", "run_config.json")
# Working folders inside an output folder: lmms-eval's datasets cache, and the task folders
# written for it, whose YAML names absolute paths (lmms-eval resolves relative ones against the
# working directory), so a copy of the project would hash them differently.
CACHE_FOLDERS = ("hf_cache/", "data/**/tasks/")


def split(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the run computed, what it measured about itself)."""
    result = {k: v for k, v in summary.items() if k not in TELEMETRY_KEYS}
    measured = {k: v for k, v in summary.items() if k in TELEMETRY_KEYS}
    return result, measured


def telemetry_path(path: str | Path) -> Path:
    """`summary.json` -> `summary.telemetry.json`, beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.telemetry{path.suffix}")


def write_split(path: str | Path, summary: dict[str, Any], **dump: Any) -> None:
    """Write `summary` to `path` without its telemetry, and the telemetry beside it."""
    result, measured = split(summary)
    Path(path).write_text(json.dumps(result, **dump))
    telemetry_path(path).write_text(json.dumps(measured, **dump))


def read_merged(path: str | Path) -> dict[str, Any]:
    """What `write_split` wrote, merged again (the telemetry may be missing: a copied output)."""
    data = json.loads(Path(path).read_text())
    extra = telemetry_path(path)
    return data | (json.loads(extra.read_text()) if extra.exists() else {})
