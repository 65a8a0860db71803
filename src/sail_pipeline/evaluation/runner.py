"""Runs the world benchmark through lmms-eval in process and checks every task produced a score.

lmms-eval's CLI exits 0 even when a task fails, so success here is decided by inspecting the
returned results rather than by the absence of an exception.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline.evaluation.tasks import (
    METRIC,
    TASK_PREFIX,
    chance_levels,
    write_world_tasks,
)

MODEL_NAME = "sail_vl"
_METRIC_KEY = f"{METRIC},none"  # lmms-eval keys results as "<metric>,<filter>"


class EvaluationError(RuntimeError):
    """One or more requested tasks produced no score; ``tasks`` names them."""

    def __init__(self, tasks: Sequence[str], detail: str) -> None:
        super().__init__(f"evaluation failed for task(s) {', '.join(tasks)}: {detail}")
        self.tasks = list(tasks)


@dataclass
class EvalReport:
    scores: dict[str, float]  # task -> score in [0, 1] (see world_metrics for each task's)
    n_samples: dict[str, int]
    chance: dict[str, float]  # task -> expected score of guessing, where guessing means one
    average: float  # mean score over tasks, in percent
    samples_path: Path
    results_path: Path
    # task -> its other metrics (POPE precision, MME total, ...), as lmms-eval reported them
    details: dict[str, dict[str, float]] = field(default_factory=dict)
    # task -> requests not run because their prompt is longer than the model reads (scored
    # wrong, counted here); tasks without any are absent
    rejected: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As JSON, its files named relative to the folder of `report.json`: a report written
        in a copy of the project (`dvc exp run`, a moved checkout) is the same bytes."""
        data = asdict(self)
        data["samples_path"] = os.path.relpath(self.samples_path, self.results_path.parent)
        data["results_path"] = self.results_path.name
        return data


def _force_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # Both libraries read these flags once at import; if they are already loaded the
    # environment alone would not stop a hub lookup.
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
        datasets_config.HF_DATASETS_OFFLINE = True


def _quiet_lmms_eval_logging() -> None:
    from loguru import logger

    # lmms_eval.models already replaces every loguru sink with a stdout one on import; this
    # moves it to stderr so stdout stays clean for the caller, at WARNING level.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def _failed_tasks(exc: BaseException, requested: list[str]) -> list[str]:
    # SailVL tags its errors with the task it was serving; otherwise any task may be at fault.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        name = getattr(current, "task_name", None)
        if name in requested:
            return [name]
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return list(requested)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


def _collect_scores(results: dict[str, Any] | None, task_names: list[str]
                    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Each task's ``score`` and its other metrics; a task without a score has failed."""
    per_task = (results or {}).get("results", {})
    samples = (results or {}).get("samples", {})
    scores: dict[str, float] = {}
    details: dict[str, dict[str, float]] = {}
    for name in task_names:
        reported = per_task.get(name, {})
        value = _number(reported.get(_METRIC_KEY))
        if value is not None and samples.get(name):
            scores[name] = value
        details[name] = {key.removesuffix(",none"): number for key, raw in reported.items()
                         if key.endswith(",none") and key != _METRIC_KEY
                         and "_stderr" not in key
                         and (number := _number(raw)) is not None}
    missing = [name for name in task_names if name not in scores]
    if missing:
        raise EvaluationError(missing, f"lmms-eval returned no {METRIC} result")
    return scores, {name: values for name, values in details.items() if values}


def _sample_rows(results: dict[str, Any], task_names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in task_names:
        for sample in results["samples"][name]:
            prediction = sample["filtered_resps"][0] if sample["filtered_resps"] else ""
            if isinstance(prediction, list):
                prediction = prediction[0] if prediction else ""
            doc = sample.get("doc", {})
            rows.append(
                {
                    "task": name,
                    "doc_id": sample["doc_id"],
                    "id": doc.get("id"),
                    "question": doc.get("question"),
                    "target": sample["target"],
                    "prediction": prediction,
                    "correct": _sample_correct(sample.get(METRIC)),
                    # What the task's scorer recorded for this row (counts, parsed reply, ...).
                    "record": score if isinstance(score := sample.get(METRIC), dict) else None,
                }
            )
    return rows


def _sample_correct(value: Any) -> bool | None:
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, dict):
        if "correct" in value:
            return bool(value["correct"])
        if "prediction" in value:
            return value["prediction"] == value.get("answer")
    return None  # a caption is graded by counts, not right or wrong


REJECTIONS_FILE = "rejected_prompts.jsonl"


def _model_args(model_dir: Path, batch_size: int, max_new_tokens: int, device: str,
                work_dir: Path) -> str:
    """lmms-eval's ``model_args`` for a checkpoint that exists; hub lookups switched off.

    The model records the requests it does not run in ``work_dir``'s REJECTIONS_FILE, which
    starts empty here so that a rerun counts only its own.
    """
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    for path in (model_dir, work_dir):
        if any(char in str(path) for char in ",="):
            raise ValueError(f"lmms-eval cannot pass a path containing ',' or '=': {path}")
    _force_offline()
    work_dir.mkdir(parents=True, exist_ok=True)
    rejections = work_dir / REJECTIONS_FILE
    rejections.unlink(missing_ok=True)
    return (
        f"pretrained={model_dir},batch_size={batch_size},"
        f"max_new_tokens={max_new_tokens},device={device},rejections={rejections}"
    )


def read_rejections(work_dir: Path) -> dict[str, int]:
    """Requests the model did not run (prompt too long), counted per task."""
    path = work_dir / REJECTIONS_FILE
    if not path.exists():
        return {}
    counts: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        task = json.loads(line)["task"]
        counts[task] = counts.get(task, 0) + 1
    return counts


def run_world_suite(
    model_dir: str | os.PathLike[str],
    benchmark_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    question_types: list[str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    limit: int | float | None = None,
    device: str = "cpu",
) -> EvalReport:
    """Evaluate a checkpoint on the world tasks via lmms-eval's ``simple_evaluate``.

    Writes the task folder under ``work_dir/tasks``, per-sample predictions to
    ``work_dir/samples.jsonl`` and the report to ``work_dir/report.json``. Raises
    :class:`EvaluationError` naming every task that failed or returned no score.
    """
    work_dir = Path(work_dir).resolve()
    model_args = _model_args(Path(model_dir).resolve(), batch_size, max_new_tokens, device,
                             work_dir)
    benchmark = pd.read_parquet(benchmark_path)

    task_dir = work_dir / "tasks"
    task_names = write_world_tasks(benchmark, task_dir, question_types)
    chance = chance_levels(benchmark, [name.removeprefix(TASK_PREFIX) for name in task_names])

    from lmms_eval.tasks import TaskManager

    _quiet_lmms_eval_logging()
    # include_defaults=False: indexing lmms-eval's ~300 bundled task folders takes seconds
    # and a bundled task could shadow ours (its index wins on a name clash).
    task_manager = TaskManager(
        "WARNING", include_path=str(task_dir), include_defaults=False, model_name=MODEL_NAME
    )
    results = _evaluate(model_args, task_names, task_manager, limit)
    scores, details = _collect_scores(results, task_names)
    return _save_report(EvalReport(
        scores=scores, details=details,
        n_samples={name: len(results["samples"][name]) for name in task_names},
        chance=chance, rejected=read_rejections(work_dir),
        average=100.0 * sum(scores.values()) / len(scores),
        samples_path=_save_samples(results, task_names, work_dir),
        results_path=work_dir / "report.json",
    ))


def _evaluate(model_args: str, tasks: list[str], task_manager: Any,
              limit: int | float | None) -> dict[str, Any]:
    """lmms-eval in process; any exception becomes an EvaluationError naming the task."""
    from lmms_eval.evaluator import simple_evaluate

    try:
        return simple_evaluate(
            model=MODEL_NAME, model_args=model_args, tasks=tasks, task_manager=task_manager,
            limit=limit, log_samples=True, bootstrap_iters=0, verbosity="WARNING",
            process_docs_parallel=1,
        ) or {}
    except Exception as exc:
        raise EvaluationError(_failed_tasks(exc, tasks), f"{type(exc).__name__}: {exc}") from exc


def _save_samples(results: dict[str, Any], tasks: list[str], work_dir: Path) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "samples.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for row in _sample_rows(results, tasks):
            handle.write(json.dumps(row, default=str) + "\n")
    return path


def _save_report(report: EvalReport) -> EvalReport:
    report.results_path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def run_real_suite(
    model_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    benchmarks: list[str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 512,
    limit: int | float | None = None,
    device: str = "cuda",
) -> EvalReport:
    """The SAIL-VL model card's benchmarks through lmms-eval's bundled tasks, 0-100 each.

    Checks first, before the model loads, that every dataset is cached locally and judge
    keys are set (`real_suite.preflight`); raises `RealSuiteUnavailable` listing what is not.
    """
    from sail_pipeline.evaluation.real_suite import card_scores, preflight, select

    chosen = select(benchmarks)
    work_dir = Path(work_dir).resolve()
    model_args = _model_args(Path(model_dir).resolve(), batch_size, max_new_tokens, device,
                             work_dir)
    from lmms_eval.tasks import TaskManager

    _quiet_lmms_eval_logging()
    task_manager = TaskManager("WARNING", include_defaults=True, model_name=MODEL_NAME)
    preflight(chosen, task_manager)
    tasks = [b.task for b in chosen]
    results = _evaluate(model_args, tasks, task_manager, limit)
    scores = card_scores(results, chosen)
    return _save_report(EvalReport(
        scores={name: value / 100.0 for name, value in scores.items()},
        n_samples={b.card_name: len(results["samples"].get(b.task, [])) for b in chosen},
        chance={}, rejected=read_rejections(work_dir),
        average=sum(scores.values()) / len(scores),
        samples_path=_save_samples(results, tasks, work_dir),
        results_path=work_dir / "report.json"))
