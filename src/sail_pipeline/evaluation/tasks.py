"""Writes lmms-eval task definitions (YAML + data + utils.py) for the world benchmark."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

QUESTION_TYPES: tuple[str, ...] = ("count", "colour", "shape", "position", "ocr")
TASK_PREFIX = "world_"
GROUP_NAME = "world_suite"
METRIC = "accuracy"

_SAFE_NAME = re.compile(r"^[a-z0-9_]+$")

_UTILS_SOURCE = '''"""Target of the YAML's `!function utils.<name>`; the code is in the package."""

from sail_pipeline.evaluation.world_metrics import (  # noqa: F401
    doc_to_target,
    doc_to_text,
    doc_to_visual,
    process_results,
)
'''


class _Function(str):
    """A YAML scalar written as lmms-eval's ``!function`` tag."""


class _TaskDumper(yaml.SafeDumper):
    pass


_TaskDumper.add_representer(
    _Function, lambda dumper, value: dumper.represent_scalar("!function", str(value))
)
# Stop strings such as "\n" read far better double-quoted than as YAML's folded blocks.
_TaskDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style='"' if "\n" in value else None
    ),
)


def task_name(question_type: str) -> str:
    return f"{TASK_PREFIX}{question_type}"


def _select_types(present: list[str], requested: list[str] | None) -> list[str]:
    if requested is None:
        # Canonical order first so reports line up across runs; unknown types follow sorted.
        known = [qt for qt in QUESTION_TYPES if qt in present]
        return known + sorted(set(present) - set(QUESTION_TYPES))
    missing = [qt for qt in requested if qt not in present]
    if missing:
        raise ValueError(f"question types {missing} have no rows in the benchmark (has {present})")
    return list(dict.fromkeys(requested))


def _task_config(name: str, data_file: Path, cache_dir: Path) -> dict[str, Any]:
    return {
        "task": name,
        "dataset_path": "parquet",
        "dataset_kwargs": {
            # Absolute: lmms-eval would otherwise resolve data_files against the CWD.
            "data_files": {"test": str(data_file)},
            # Keeps the Arrow cache beside the data instead of in the user's HF cache.
            "cache_dir": str(cache_dir),
        },
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_visual": _Function("utils.doc_to_visual"),
        "doc_to_text": _Function("utils.doc_to_text"),
        "doc_to_target": _Function("utils.doc_to_target"),
        "process_results": _Function("utils.process_results"),
        # No max_new_tokens here: the model's own max_new_tokens argument then decides,
        # so run_world_suite can set it without overriding every task.
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "temperature": 0.0},
        "metric_list": [{"metric": METRIC, "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def _group_config(names: list[str]) -> dict[str, Any]:
    return {
        "group": GROUP_NAME,
        "task": names,
        "aggregate_metric_list": [
            {"metric": METRIC, "aggregation": "mean", "weight_by_size": False}
        ],
        "metadata": {"version": 1.0},
    }


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.dump(config, Dumper=_TaskDumper, sort_keys=False), encoding="utf-8")


def write_world_tasks(
    benchmark_path: Path, out_dir: Path, question_types: list[str] | None = None
) -> list[str]:
    """Write one lmms-eval task per question type plus the ``world_suite`` group.

    Each task reads its own Parquet slice of the benchmark (test split only). Returns the
    task names in evaluation order. ``out_dir`` is meant to be passed as lmms-eval's
    include path.
    """
    frame = pd.read_parquet(benchmark_path)
    present = sorted(frame["question_type"].astype(str).unique())
    types = _select_types(present, question_types)
    unsafe = [qt for qt in types if not _SAFE_NAME.match(qt)]
    if unsafe:
        raise ValueError(f"question types {unsafe} cannot form lmms-eval task names")

    out_dir = Path(out_dir).resolve()
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    names = [task_name(qt) for qt in types]
    # A stale task YAML from an earlier benchmark would still be indexed by lmms-eval.
    for stale in out_dir.glob(f"{TASK_PREFIX}*.yaml"):
        if stale.stem not in names and stale.stem != GROUP_NAME:
            stale.unlink()

    # Every slice is rewritten below, so Arrow caches built from earlier slices are dead weight
    # (and a same-second rewrite could otherwise be served stale).
    cache_dir = data_dir / "hf_cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    (out_dir / "utils.py").write_text(_UTILS_SOURCE, encoding="utf-8")
    for question_type, name in zip(types, names, strict=True):
        data_file = data_dir / f"{name}.parquet"
        subset = frame[frame["question_type"] == question_type].reset_index(drop=True)
        subset.to_parquet(data_file, index=False)
        _write_yaml(out_dir / f"{name}.yaml", _task_config(name, data_file, cache_dir))
    _write_yaml(out_dir / f"{GROUP_NAME}.yaml", _group_config(names))
    return names
