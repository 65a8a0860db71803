"""Evaluation node: lmms-eval in process on every requested checkpoint, then compare."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import torch

from sail_pipeline.evaluation.compare import score_chart, score_table
from sail_pipeline.evaluation.runner import run_real_suite, run_world_suite
from sail_pipeline.params import EvaluationParams

log = logging.getLogger(__name__)
WORK_DIR = Path("data/07_model_output/evaluation")


def evaluate_checkpoints(benchmark: str, evaluation: dict, alignment: dict, advance: dict,
                         knowledge: dict, instruction: dict, preference: dict):
    params = EvaluationParams.model_validate(evaluation)
    available = {"alignment": alignment, "advance": advance, "knowledge": knowledge,
                 "instruction": instruction, "preference": preference}
    reports = {}
    for name in params.checkpoints:
        if params.suite == "real":
            report = run_real_suite(
                available[name]["hf_dir"], (WORK_DIR / name).resolve(),
                benchmarks=params.real_benchmarks, batch_size=params.batch_size,
                max_new_tokens=params.max_new_tokens, limit=params.limit,
                device="cuda" if torch.cuda.is_available() else "cpu",
            )
        else:
            report = run_world_suite(
                available[name]["hf_dir"], benchmark, (WORK_DIR / name).resolve(),
                question_types=params.question_types, batch_size=params.batch_size,
                max_new_tokens=params.max_new_tokens, limit=params.limit,
            )
        reports[name] = report
        log.info("%s: average %.1f | %s", name, report.average,
                 " ".join(f"{t}={s:.2f}" + (f" (chance {report.chance[t]:.2f})"
                                            if t in report.chance else "")
                          for t, s in report.scores.items()))
        if mlflow.active_run() is not None:
            mlflow.log_metrics({f"eval/{name}/{t}": s for t, s in report.scores.items()}
                               | {f"eval/{name}/average": report.average}
                               | {f"eval/{name}/{t}/{m}": v for t, extra in report.details.items()
                                  for m, v in extra.items()}
                               | {f"eval/chance/{t}": c for t, c in report.chance.items()})
            mlflow.log_artifact(str(report.samples_path), artifact_path=f"evaluation/{name}")
    scores = score_table(reports)
    figure = score_chart(scores)
    summary: dict[str, Any] = {name: r.to_dict() for name, r in reports.items()}
    # Flat numbers only: what `dvc metrics show` and `dvc exp show` compare.
    metrics = {name: {task.removeprefix("world_"): round(score, 4)
                      for task, score in r.scores.items()} | {"average": round(r.average, 2)}
               for name, r in reports.items()}
    return scores, figure, summary, metrics
