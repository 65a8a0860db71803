"""Writes lmms-eval task definitions (YAML + data + utils.py) for the world benchmark.

One task per question type. How a type is scored is looked up in `TASK_KINDS` (short-answer
types need no entry); every task reports ``score`` in [0, 1], which the ``world_suite``
group averages.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sail_pipeline.evaluation import world_metrics

TASK_TYPES: tuple[str, ...] = ("count", "colour", "shape", "position", "ocr", "caption",
                                   "pope", "mme", "mmbench")
TASK_PREFIX = "world_"
GROUP_NAME = "world_suite"
METRIC = "score"

_SAFE_NAME = re.compile(r"^[a-z0-9_]+$")


def _short_answer_chance(rows: pd.DataFrame) -> float | None:
    options = {c for raw in rows["choices"] for c in world_metrics.parse_choices(raw)}
    return 1.0 / len(options) if options else None


def _pope_chance(rows: pd.DataFrame) -> float:
    # F1 of answering yes with probability 1/2: precision = share of yes answers, recall = 1/2.
    positive = float((rows["answer"] == "yes").mean())
    return positive / (positive + 0.5) if positive else 0.0


def _mme_chance(rows: pd.DataFrame) -> float:
    return (0.5 + 0.25) / 2  # coin flips: acc 1/2, acc+ (both of a pair) 1/4


def _circular_chance(rows: pd.DataFrame) -> float:
    # Independent uniform guesses: every one of a question's k rotations right, (1/k)^k.
    sizes = rows.groupby("group_id").size()
    return float(((1.0 / sizes) ** sizes).mean())


@dataclass(frozen=True)
class TaskKind:
    """How rows of one question type become an lmms-eval task.

    ``metrics`` maps each metric to its aggregation: "mean" over per-row floats, or the
    name of a `world_metrics` function over the per-row records. ``chance`` gives the
    expected ``score`` of guessing, or None where guessing has no meaning (free text).
    """

    process_results: str = "process_results"
    metrics: dict[str, str] = field(default_factory=lambda: {METRIC: "mean"})
    chance: Callable[[pd.DataFrame], float | None] = _short_answer_chance
    max_new_tokens: int | None = None  # None: the model's own max_new_tokens argument


SHORT_ANSWER = TaskKind()
TASK_KINDS: dict[str, TaskKind] = {
    "caption": TaskKind(
        "process_caption",
        {"score": "caption_f1", "object_recall": "object_recall",
         "object_precision": "object_precision", "attribute_recall": "attribute_recall",
         "attribute_precision": "attribute_precision"},
        chance=lambda rows: None, max_new_tokens=64),
    "pope": TaskKind(
        "process_pope",
        {"score": "pope_f1", "accuracy": "pope_accuracy", "precision": "pope_precision",
         "recall": "pope_recall", "yes_ratio": "pope_yes_ratio"},
        chance=_pope_chance),
    "mme": TaskKind(
        "process_mme",
        {"score": "mme_score", "total": "mme_total", "acc": "mme_acc",
         "acc_plus": "mme_acc_plus"},
        chance=_mme_chance),
    "mmbench": TaskKind(
        "process_mmbench", {"score": "circular_accuracy", "accuracy": "plain_accuracy"},
        chance=_circular_chance),
}


def task_kind(question_type: str) -> TaskKind:
    return TASK_KINDS.get(question_type, SHORT_ANSWER)


def _utils_source() -> str:
    names = {"doc_to_target", "doc_to_text", "doc_to_visual"}
    for kind in (SHORT_ANSWER, *TASK_KINDS.values()):
        names.add(kind.process_results)
        names.update(agg for agg in kind.metrics.values() if agg != "mean")
    missing = sorted(n for n in names if not callable(getattr(world_metrics, n, None)))
    if missing:
        raise AttributeError(f"world_metrics lacks the task functions {missing}")
    imports = "".join(f"    {name},\n" for name in sorted(names))
    return ('"""Target of the YAML\'s `!function utils.<name>`; the code is in the package."""\n\n'
            f"from sail_pipeline.evaluation.world_metrics import (  # noqa: F401\n{imports})\n")


def chance_levels(benchmark: pd.DataFrame, question_types: list[str]) -> dict[str, float]:
    """Expected ``score`` of guessing per task; tasks where guessing means nothing are left out."""
    levels = {}
    for question_type in question_types:
        rows = benchmark[benchmark["question_type"] == question_type]
        level = task_kind(question_type).chance(rows)
        if level is not None:
            levels[task_name(question_type)] = level
    return levels


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
        known = [qt for qt in TASK_TYPES if qt in present]
        return known + sorted(set(present) - set(TASK_TYPES))
    missing = [qt for qt in requested if qt not in present]
    if missing:
        raise ValueError(f"question types {missing} have no rows in the benchmark (has {present})")
    return list(dict.fromkeys(requested))


def _task_config(name: str, kind: TaskKind, data_file: Path, cache_dir: Path
                 ) -> dict[str, Any]:
    generation: dict[str, Any] = {"until": ["\n"], "do_sample": False, "temperature": 0.0}
    # Otherwise no max_new_tokens here: the model's own max_new_tokens argument then decides,
    # so run_world_suite can set it without overriding every task.
    if kind.max_new_tokens is not None:
        generation["max_new_tokens"] = kind.max_new_tokens
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
        "process_results": _Function(f"utils.{kind.process_results}"),
        "generation_kwargs": generation,
        "metric_list": [
            {"metric": metric,
             "aggregation": aggregation if aggregation == "mean"
             else _Function(f"utils.{aggregation}"),
             # The yes-ratio is a bias read-out, best near the data's share of "yes".
             "higher_is_better": metric != "yes_ratio"}
            for metric, aggregation in kind.metrics.items()
        ],
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
    benchmark: Path | pd.DataFrame, out_dir: Path, question_types: list[str] | None = None
) -> list[str]:
    """Write one lmms-eval task per question type plus the ``world_suite`` group.

    ``benchmark`` is the benchmark Parquet or the table already read from it. Each task reads
    its own Parquet slice of it (test split only). Returns the task names in evaluation order.
    ``out_dir`` is meant to be passed as lmms-eval's include path.
    """
    frame = benchmark if isinstance(benchmark, pd.DataFrame) else pd.read_parquet(benchmark)
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
    (out_dir / "utils.py").write_text(_utils_source(), encoding="utf-8")
    for question_type, name in zip(types, names, strict=True):
        data_file = data_dir / f"{name}.parquet"
        subset = frame[frame["question_type"] == question_type].reset_index(drop=True)
        subset.to_parquet(data_file, index=False)
        _write_yaml(out_dir / f"{name}.yaml",
                    _task_config(name, task_kind(question_type), data_file, cache_dir))
    _write_yaml(out_dir / f"{GROUP_NAME}.yaml", _group_config(names))
    return names
