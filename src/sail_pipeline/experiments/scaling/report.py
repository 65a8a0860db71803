"""A sweep's finished points -> tables, fits, plots, the claims and the reproduction report.

The claims are the papers'; which variants test each is declared once here, in `CLAIMS`. A
claim whose variants the sweep did not run is listed as not tested.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.experiments import calibration, chance
from sail_pipeline.experiments.chance import VERDICT_AVERAGE
from sail_pipeline.experiments.scaling.fit import bands_for, compare_variants, fit_sweep
from sail_pipeline.experiments.scaling.mlflow_view import log_sweep
from sail_pipeline.experiments.scaling.plots import plot_axes, plot_metric, plot_residuals
from sail_pipeline.experiments.scaling.reproduction import reproduction_report
from sail_pipeline.schema import StatisticsParams

log = logging.getLogger(__name__)

# The headline metrics: right after pretraining (detailed captions) and after the fixed SFT.
# The scores the claims are judged on (both 0–1, the margins' scale): caption F1 after
# pretraining, and the mean of the SFT tasks above chance (`experiments.chance`).
HEADLINE = ("pretrain/caption", f"sft/{VERDICT_AVERAGE}")
# Plotted beside them: every task's average, in percent, as the benchmark reports it.
PLOTTED = (*HEADLINE, "sft/average")
PLOTS_FOLDER = "scaling"  # next to reproduction.md, as the catalog places them
SAIL = "recaption_filtered"
CLAIMS: tuple[dict[str, Any], ...] = (
    {"claim": "Score grows log-linearly with pretraining data (score = a + b ln N, b > 0)",
     "kind": "slope", "variant": SAIL, "expected": "increase"},
    {"claim": "Recaptions beat alt-text at equal N", "kind": "difference",
     "variant_a": "recaption", "variant_b": "alt_text", "expected": "increase"},
    {"claim": "Quality filtering beats no filtering at equal N", "kind": "difference",
     "variant_a": "recaption_filtered", "variant_b": "recaption", "expected": "increase"},
    {"claim": "More low-quality (alt-text) pretraining data does not help", "kind": "slope",
     "variant": "noisy_expansion", "expected": "no_increase", "r2_goal": None},
    {"claim": "Pretrain-Advance adds to Alignment (projector) alone",
     "kind": "difference", "variant_a": SAIL, "variant_b": "alignment_only",
     "expected": "increase"},
    {"claim": "(stand-in) Training the LLM in Advance beats the recipe's frozen LLM",
     "kind": "difference", "variant_a": SAIL, "variant_b": "frozen_llm",
     "expected": "increase"},
    # The steps control: every size trained for the largest size's optimizer steps. Whether
    # the sweep's gain with N is more distinct data, or more steps, or both.
    {"claim": "At equal optimizer steps, more distinct data helps (the steps control rises "
              "with N)", "kind": "slope", "variant": "steps_control", "expected": "increase",
     "r2_goal": None},
    {"claim": "At equal data, more optimizer steps help (the steps control beats one pass)",
     "kind": "difference", "variant_a": "steps_control", "variant_b": SAIL,
     "expected": "increase"},
)


def points_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished point: who it is, its scores, and where its time went."""
    rows = []
    for r in results:
        timing = r["timing"]
        launches = sum(v for k, v in timing.items() if k.endswith("_seconds")
                       and not k.endswith(("_train_seconds", "total_seconds"))
                       and not k.startswith("eval_"))
        training = sum(v for k, v in timing.items() if k.endswith("_train_seconds"))
        evaluation = sum(v for k, v in timing.items() if k.startswith("eval_"))
        rows.append({"variant": r["variant"], "n": r["n"], "tokens": r["tokens"],
                     # None in a point stored before they were recorded
                     "samples": r.get("samples", math.nan), "steps": r.get("steps", math.nan),
                     "seed": r["seed"], "namespace": r["namespace"], "identity": r["identity"],
                     "reused": r.get("reused", False), **r["scores"],
                     "seconds_total": timing["total_seconds"], "seconds_training": training,
                     "seconds_startup": launches - training, "seconds_evaluation": evaluation})
    return pd.DataFrame(rows)


def _claims(variants: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the claims this sweep's variants can test, one per headline metric; the claims it
    cannot, each with `claim` and the variants it lacks, `missing`)."""
    tested, untested = [], []
    for claim in CLAIMS:
        needed = [claim[k] for k in ("variant", "variant_a", "variant_b") if k in claim]
        lacking = [v for v in needed if v not in variants]
        if lacking:
            log.info("claim not tested (the sweep lacks %s): %s", lacking, claim["claim"])
            untested.append({"claim": claim["claim"], "missing": lacking})
            continue
        tested += [claim | {"metric": metric} for metric in HEADLINE]
    return tested, untested


def summary_metrics(points: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Flat numbers per variant (headline means over the finished points): what `dvc exp
    show` compares across experiments, e.g. one experiment per size."""
    out: dict[str, dict[str, float]] = {}
    for variant, part in points.groupby("variant", sort=True):
        out[str(variant)] = {"points": int(len(part))} | {
            metric.replace("/", "_"): round(float(part[metric].mean()), 4)
            for metric in PLOTTED if metric in part}
    return out


def build(results: list[dict[str, Any]], missing: list[str], statistics: StatisticsParams,
          accounting: pd.DataFrame | None, schedule_section: str = "",
          chance_levels: dict[str, float] | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any], str, dict]:
    """(points, fits, comparisons, figures by file name, the report's markdown, the flat
    metrics). `schedule_section`, when the selection pipeline's `schedule` experiment has run,
    is its curriculum vs all-in-one verdict, appended to the report."""
    points = points_table(results)
    if points.empty:
        text = ("# Reproduction report\n\nNo point of the sweep has finished. Missing:\n\n"
                + "\n".join(f"- {name}" for name in missing) + "\n" + schedule_section)
        return points, pd.DataFrame(), pd.DataFrame(), {}, text, {}
    tasks = _tasks_above_chance(points, chance_levels or {}, statistics)
    points = chance.with_verdict_average(points, tasks["task"][tasks["above_chance"]].tolist(),
                                         "sft") if not tasks.empty else points
    metrics = sorted(c for c in points.columns if "/" in c)
    fits = fit_sweep(points, metrics, level=statistics.level)
    claims, untested = _claims(list(pd.unique(points["variant"])))
    pairs = {(c["variant_a"], c["variant_b"], c["metric"]) for c in claims
             if c["kind"] == "difference"}
    comparisons = [compare_variants(points, a, b, metric, level=statistics.level)
                   for a, b, metric in sorted(pairs)]
    figures, links = {}, {}
    for metric in metrics:
        name = metric.replace("/", "_") + ".png"
        figures[name] = plot_metric(points, fits, metric,
                                    bands_for(points, metric, level=statistics.level))
        if metric in PLOTTED:
            links[metric] = f"{PLOTS_FOLDER}/{name}"
            # Where the log law bends away from the data, its residuals arch.
            residuals = metric.replace("/", "_") + "_residuals.png"
            figures[residuals] = plot_residuals(points, fits, metric)
            links[f"{metric}: residuals of the log law"] = f"{PLOTS_FOLDER}/{residuals}"
            # Against samples, tokens and optimizer steps: is N counting data or steps?
            axes = metric.replace("/", "_") + "_axes.png"
            figures[axes] = plot_axes(points, metric)
            links[f"{metric}: against samples, tokens and steps"] = f"{PLOTS_FOLDER}/{axes}"
            for name_ in (residuals, axes):
                lineage.log_figure(figures[name_], f"scaling/{name_}")
        lineage.log_figure(figures[name], f"scaling/{name}")
    # What the finished points cost to compute, each timed when it trained (a reused point
    # keeps its first run's timing): the whole, then its parts.
    count = len(points)
    wall = {f"{count} points, their own time": points["seconds_total"].sum(),
            "training loops": points["seconds_training"].sum(),
            "process start-up, model loads, data": points["seconds_startup"].sum(),
            "evaluation": points["seconds_evaluation"].sum(),
            "per point (mean)": points["seconds_total"].mean()}
    text = reproduction_report(points, fits, comparisons, claims, links, missing, wall,
                               untested=untested, statistics=statistics)
    text += chance.section(tasks, points, "sft", f"decided on {_deciding_variant(points)}") \
        if not tasks.empty else ""
    text += _calibration(points, statistics) + _pools_section(accounting) + schedule_section
    log_sweep(points, fits, len(points), len(missing))
    return points, fits, pd.DataFrame(comparisons), figures, text, summary_metrics(points)


def _deciding_variant(points: pd.DataFrame) -> str:
    """The variant whose noise and tasks the report's shared decisions use: the recipe's, or
    the first variant's when it did not run."""
    variants = list(pd.unique(points["variant"]))
    return SAIL if SAIL in variants else str(variants[0])


def _tasks_above_chance(points: pd.DataFrame, levels: dict[str, float],
                        statistics: StatisticsParams) -> pd.DataFrame:
    """The SFT tasks' table (`chance.task_table`), decided on one variant for every variant:
    the same tasks make every variant's verdict average."""
    part = points[points["variant"] == _deciding_variant(points)]
    return chance.task_table(part, levels, "sft", statistics.alpha)


def _calibration(points: pd.DataFrame, statistics: StatisticsParams) -> str:
    """The verdict rules checked on planted truths with this sweep's design and noise (the
    deciding variant's), for each metric the claims use."""
    variant = _deciding_variant(points)
    return "".join(calibration.section(points, variant, metric, statistics,
                                       statistics.calibration_runs)
                   for metric in HEADLINE if metric in points.columns)


def _pools_section(accounting: pd.DataFrame | None) -> str:
    if accounting is None:
        return ""
    lines = ["", "## Pools", "", "| pool | candidates | empty | rejected by the filter | pairs |",
             "|---|---|---|---|---|"]
    for row in accounting.itertuples():
        lines.append(f"| {row.pool} | {row.candidates} | {row.empty} | "
                     f"{row.rejected_by_filter} | {row.pairs} |")
    return "\n".join(lines) + "\n"
