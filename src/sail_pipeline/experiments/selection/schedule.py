"""Curriculum vs all-in-one: the SFT data-size curves of both schedules, fitted, and the
paper's two claims judged on them. The same section goes into the schedule experiment's report
and into the scaling sweep's `reproduction.md`.

SAIL-VL says the curriculum (1) beats all-in-one SFT on the same data and (2) turns the SFT
scaling curve from logarithmic into near-linear. (2) is a claim about shape: a log-linear curve
is straight against ln N and a linear one bends upward, so it is judged on the difference of
the two curves' bends in ln N (`scaling.fit._curvatures`), whatever their levels.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sail_pipeline.experiments import chance
from sail_pipeline.experiments.scaling.fit import bands_for, compare_variants, fit_sweep
from sail_pipeline.experiments.scaling.plots import plot_metric
from sail_pipeline.experiments.scaling.reproduction import reproduction_report
from sail_pipeline.experiments.selection.experiments import ALL_IN_ONE, AVERAGE, CURRICULUM
from sail_pipeline.schema import StatisticsParams

TITLE = "SFT schedule: curriculum vs all-in-one"
VERDICT = f"sft/{chance.VERDICT_AVERAGE}"  # what the claims are judged on (0–1)
FIGURE = "selection/schedule.png"  # beside reproduction.md, as the catalog places it
CLAIMS = (
    {"claim": "The curriculum beats all-in-one SFT on the same data", "kind": "difference",
     "variant_a": CURRICULUM, "variant_b": ALL_IN_ONE, "expected": "increase", "metric": VERDICT},
    {"claim": "The curriculum turns the SFT data-scaling curve from logarithmic towards linear "
              "(it bends upward in ln N more than all-in-one's)", "kind": "difference",
     "variant_a": CURRICULUM, "variant_b": ALL_IN_ONE, "expected": "increase", "metric": VERDICT,
     "measure": "curvature_diff"},
    {"claim": "More SFT data helps the curriculum (score = a + b ln N, b > 0)", "kind": "slope",
     "variant": CURRICULUM, "expected": "increase", "metric": VERDICT},
    {"claim": "More SFT data helps all-in-one (score = a + b ln N, b > 0)", "kind": "slope",
     "variant": ALL_IN_ONE, "expected": "increase", "metric": VERDICT},
)


def metrics_of(points: pd.DataFrame) -> list[str]:
    return sorted(c for c in points.columns if c.startswith("sft/"))


def analyse(points: pd.DataFrame, statistics: StatisticsParams,
            levels: dict[str, float] | None = None) -> tuple[pd.DataFrame, list[dict], str]:
    """(the fit table, the comparisons, the report's markdown) of the schedule points. The
    claims are judged on the mean of the tasks above chance (`experiments.chance`), decided
    on both schedules' points; without the chance `levels`, every task counts."""
    tasks = chance.task_table(points, levels or {}, "sft", statistics.alpha)
    points = chance.with_verdict_average(
        points, tasks["task"][tasks["above_chance"]].tolist(), "sft")
    metrics = metrics_of(points)
    fits = fit_sweep(points, metrics, level=statistics.level)
    comparisons = [compare_variants(points, CURRICULUM, ALL_IN_ONE, metric,
                                    level=statistics.level) for metric in metrics]
    wall = {f"{len(points)} points, their own time": float(points["seconds"].sum())} \
        if "seconds" in points and points["seconds"].notna().all() else None
    text = reproduction_report(points, fits, comparisons, list(CLAIMS),
                               {AVERAGE: FIGURE}, [], wall, title=TITLE, statistics=statistics)
    text += chance.section(tasks, points, "sft", "decided on both schedules")
    return fits, comparisons, text


def figure(points: pd.DataFrame, fits: pd.DataFrame, level: float) -> Figure:
    return plot_metric(points, fits, AVERAGE, bands_for(points, AVERAGE, level=level),
                       title=f"{TITLE}: {AVERAGE} against SFT rows",
                       x_label="SFT rows N, the stages together (log scale)")


def as_section(report: str) -> str:
    """The report one heading level down, to follow another report's sections (its figure link
    holds: both reports are in 08_reporting/)."""
    lines = [("#" + line) if line.startswith("#") else line for line in report.splitlines()]
    return "\n" + "\n".join(lines) + "\n"


def report_section(points: pd.DataFrame | None, statistics: StatisticsParams,
                   levels: dict[str, float] | None = None) -> str:
    """The schedule experiment's verdict as a section of the sweep's reproduction report
    ("" when the experiment has not run)."""
    if points is None or not isinstance(points, pd.DataFrame) or points.empty:
        return ""
    return as_section(analyse(points, statistics, levels)[2])
