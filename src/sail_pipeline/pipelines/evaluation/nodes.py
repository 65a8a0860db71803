"""Evaluation node: lmms-eval in process on every requested checkpoint, then compare."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sail_pipeline import lineage
from sail_pipeline.evaluation.compare import score_chart, score_table
from sail_pipeline.evaluation.runner import run_real_suite, run_world_suite
from sail_pipeline.schema import RECIPE, EvaluationParams

log = logging.getLogger(__name__)


def evaluate_checkpoints(benchmark: str, evaluation: EvaluationParams, workdir: str,
                         *pointers: dict):
    """lmms-eval on each checkpoint in `evaluation.checkpoints`; `pointers` follow RECIPE."""
    available = dict(zip(RECIPE, pointers, strict=True))
    chosen = {name: available[name] for name in evaluation.checkpoints}
    dry = [name for name, pointer in chosen.items() if pointer.get("dry_run")]
    if dry:
        for name in chosen:
            log.info("dry run: would evaluate %s (%s) into %s", name, chosen[name]["hf_dir"],
                     Path(workdir) / name)
        import matplotlib.pyplot as plt

        return pd.DataFrame(columns=["checkpoint", "task", "score"]), plt.figure(), {}, {}
    reports = {}
    by_weights: dict[str, Any] = {}
    for name, pointer in chosen.items():
        if pointer["hf_dir"] in by_weights:
            # A stage `sft.schedule: all_in_one` passed through holds the same weights.
            log.info("%s: same checkpoint as an earlier row, not evaluated again", name)
            reports[name] = by_weights[pointer["hf_dir"]]
            continue
        if evaluation.suite == "real":
            report = run_real_suite(
                pointer["hf_dir"], Path(workdir) / name,
                benchmarks=evaluation.real_benchmarks, batch_size=evaluation.batch_size,
                max_new_tokens=evaluation.max_new_tokens, limit=evaluation.limit,
                device="cuda" if torch.cuda.is_available() else "cpu",
            )
        else:
            report = run_world_suite(
                pointer["hf_dir"], benchmark, Path(workdir) / name,
                question_types=evaluation.question_types, batch_size=evaluation.batch_size,
                max_new_tokens=evaluation.max_new_tokens, limit=evaluation.limit,
            )
        reports[name] = by_weights[pointer["hf_dir"]] = report
        log.info("%s: average %.1f | %s", name, report.average,
                 " ".join(f"{t}={s:.2f}" + (f" (chance {report.chance[t]:.2f})"
                                            if t in report.chance else "")
                          for t, s in report.scores.items()))
        lineage.log_metrics({f"eval/{name}/{t}": s for t, s in report.scores.items()}
                            | {f"eval/{name}/average": report.average}
                            | {f"eval/{name}/{t}/{m}": v for t, extra in report.details.items()
                               for m, v in extra.items()}
                            | {f"eval/chance/{t}": c for t, c in report.chance.items()}
                            | {f"eval/{name}/{t}/rejected_prompt_too_long": n
                               for t, n in report.rejected.items()})
        if report.rejected:
            log.warning("%s: requests not run, their prompt longer than the model reads "
                        "(scored wrong): %s", name, report.rejected)
        lineage.log_artifact(report.samples_path, artifact_path=f"evaluation/{name}")
    scores = score_table(reports)
    figure = score_chart(scores)
    summary: dict[str, Any] = {name: r.to_dict() for name, r in reports.items()}
    # Flat numbers only: what `dvc metrics show` and `dvc exp show` compare.
    metrics = {name: {task.removeprefix("world_"): round(score, 4)
                      for task, score in r.scores.items()} | {"average": round(r.average, 2)}
               for name, r in reports.items()}
    return scores, figure, summary, metrics
