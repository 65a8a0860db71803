"""The real benchmark suite of the SAIL-VL model card, as lmms-eval's bundled tasks.

Each model-card benchmark maps to an lmms-eval task (or group), the metric that task reports,
and the factor that puts it on 0-100 (MME: perception + cognition out of 2800). Before any
model loads, `preflight` checks that every dataset the tasks read is in the local Hugging Face
cache and that judge-scored tasks have an API key: offline, the run stops at once with the
list of what is missing, instead of failing task by task after hours of generation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JUDGE_KEY = "OPENAI_API_KEY"


@dataclass(frozen=True)
class RealBenchmark:
    card_name: str  # as the SAIL-VL model card names it
    task: str  # lmms-eval task or group
    metrics: tuple[str, ...]  # lmms-eval metric keys, summed
    scale: float  # multiplies the summed metric onto 0-100
    judge: bool = False  # scored by an LLM judge through an API


REAL_SUITE: tuple[RealBenchmark, ...] = (
    RealBenchmark("MMBench_DEV_V11", "mmbench_en_dev", ("gpt_eval_score",), 1.0, judge=True),
    RealBenchmark("MathVista_MINI", "mathvista_testmini_format", ("llm_as_judge_eval",), 1.0,
                  judge=True),
    RealBenchmark("MMStar", "mmstar", ("average",), 100.0),
    RealBenchmark("MMMU_VAL", "mmmu_val", ("mmmu_acc",), 100.0),
    RealBenchmark("MMVet", "mmvet", ("gpt_eval_score",), 1.0, judge=True),
    RealBenchmark("HallusionBench", "hallusion_bench_image", ("aAcc",), 1.0),
    RealBenchmark("AI2D_TEST", "ai2d", ("exact_match",), 100.0),
    RealBenchmark("OCRBench", "ocrbench", ("ocrbench_accuracy",), 100.0),
    RealBenchmark("RealWorldQA", "realworldqa", ("exact_match",), 100.0),
    RealBenchmark("InfoVQA_VAL", "infovqa_val", ("anls",), 100.0),
    RealBenchmark("ChartQA_TEST", "chartqa", ("relaxed_overall",), 100.0),
    RealBenchmark("MME", "mme", ("mme_perception_score", "mme_cognition_score"), 100.0 / 2800),
    RealBenchmark("DocVQA_VAL", "docvqa_val", ("anls",), 100.0),
    RealBenchmark("TextVQA_VAL", "textvqa_val", ("exact_match",), 100.0),
    RealBenchmark("POPE", "pope", ("pope_f1_score",), 100.0),
)
BY_NAME = {b.card_name: b for b in REAL_SUITE}


class RealSuiteUnavailable(RuntimeError):
    """Datasets or judge credentials the requested benchmarks need are not available."""


def select(names: Iterable[str] | None) -> list[RealBenchmark]:
    if names is None:
        return list(REAL_SUITE)
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown real benchmarks {unknown}; known: {sorted(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def dataset_paths(task: str, task_manager: Any) -> set[str]:
    """Hugging Face dataset repos an lmms-eval task (or every task of a group) reads."""
    from lmms_eval.utils import load_yaml_config

    if task_manager._name_is_group(task):
        subtasks = task_manager._get_config(task).get("task", [])
        return set().union(*(dataset_paths(t, task_manager) for t in subtasks))
    if not task_manager._name_is_registered(task):
        raise ValueError(f"lmms-eval has no task {task!r}")
    config = load_yaml_config(task_manager._get_yaml_path(task), mode="simple")
    return {config["dataset_path"]} if config.get("dataset_path") else set()


def is_cached(repo_id: str) -> bool:
    """Whether the Hub cache or the datasets cache holds `repo_id`, without any network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, repo_type="dataset", local_files_only=True)
        return True
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE",
                                         Path.home() / ".cache/huggingface/datasets"))
    return (datasets_cache / repo_id.replace("/", "___")).exists()


def preflight(benchmarks: list[RealBenchmark], task_manager: Any,
              cached: Any = is_cached) -> None:
    """Raise naming every missing dataset and judge key; return when all is in place."""
    missing: dict[str, list[str]] = {}
    for benchmark in benchmarks:
        for repo in sorted(dataset_paths(benchmark.task, task_manager)):
            if not cached(repo):
                missing.setdefault(repo, []).append(benchmark.card_name)
    judged = [b.card_name for b in benchmarks if b.judge]
    problems = [f"  dataset {repo} (for {', '.join(names)}) is not in the local Hugging Face "
                f"cache" for repo, names in sorted(missing.items())]
    if judged and not os.environ.get(JUDGE_KEY):
        problems.append(f"  {', '.join(judged)} are scored by an LLM judge: set {JUDGE_KEY} "
                        f"(or leave them out of evaluation.real_benchmarks)")
    if problems:
        raise RealSuiteUnavailable(
            "the real suite cannot run here:\n" + "\n".join(problems) + "\nDownload the "
            "datasets on a connected machine (e.g. `huggingface-cli download --repo-type "
            "dataset <repo>`) and copy the cache, or choose benchmarks with "
            "evaluation.real_benchmarks.")


def card_scores(results: dict[str, Any], benchmarks: list[RealBenchmark]) -> dict[str, float]:
    """Each benchmark's 0-100 score from lmms-eval's results (keys '<metric>,none')."""
    per_task = results.get("results", {})
    scores = {}
    for benchmark in benchmarks:
        values = per_task.get(benchmark.task, {})
        picked = [values.get(f"{m},none") for m in benchmark.metrics]
        if any(not isinstance(v, int | float) for v in picked):
            raise RuntimeError(f"{benchmark.card_name}: lmms-eval task {benchmark.task} "
                               f"returned no {', '.join(benchmark.metrics)}")
        scores[benchmark.card_name] = float(sum(picked)) * benchmark.scale
    return scores
