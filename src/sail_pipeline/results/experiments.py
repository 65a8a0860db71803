"""Results: the scaling sweep and the SFT data-selection experiments, from their reports."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sail_pipeline.results.page import Sources, image, markdown_table, page


def _embedded(report: Path, figures: list[Path]) -> str:
    """A report's Markdown one heading level down, its figure links made absolute (so that
    `write_page` copies each figure beside the page and links the copy)."""
    text = re.sub(r"^(#+) ", r"#\1 ", report.read_text(), flags=re.M)
    text = re.sub(r"^#+ .*\n", "", text, count=1)  # the report's own title: the page has one

    def absolute(match: re.Match) -> str:
        figure = (report.parent / match[2]).resolve()
        if not figure.exists():
            return match[0]
        figures.append(figure)
        return f"![{match[1]}]({figure.as_posix()})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", absolute, text).strip()


@page("scaling", "Results: the scaling sweep", run_key="scaling")
def scaling_page(sources: Sources) -> tuple[str, list[Path]]:
    report = sources.path("scaling_reproduction")
    if report is None or not report.exists():
        return ("No sweep has run here yet: `kedro run --pipelines=scaling` writes its "
                "report, then `make results` this page.", [])
    figures: list[Path] = []
    body = ["The sweep's own report (`data/08_reporting/reproduction.md`): every point, the "
            "fits and the claims it judges. How to run and read it: "
            "[scaling sweeps](../guides/scaling.md).", "", _embedded(report, figures)]
    return "\n".join(body), figures


# Each selection experiment: its analysis tables (catalog names) and what they hold.
SELECTION_TABLES = {
    "quality": [("selection_quality_ranking", "per candidate set and size: the mean average "
                 "score over seeds, its spread and its rank"),
                ("selection_quality_tau", "Kendall's tau between the rankings at two sizes, "
                 "with a bootstrap interval that resamples whole seeds")],
    "composition": [("selection_composition_effects", "per halved group: the change of the "
                     "average score against the full mixture, paired by seed, with its "
                     "interval, and per 100 rows removed")],
    "incremental": [("selection_incremental_trajectory", "each candidate tried in turn: "
                     "the average, its change, and whether it was kept")],
    "schedule": [("selection_schedule_fits", "score = a + b ln N per schedule and metric")],
}


@page("selection", "Results: the SFT data-selection experiments", run_key="selection")
def selection_page(sources: Sources) -> tuple[str, list[Path]]:
    body = ["SAIL-VL's SFT data experiments as they last ran here. What each one trains and "
            "how to read it: [SFT data and selection](../guides/sft-data.md).", ""]
    figures: list[Path] = []
    ran = False
    for experiment, tables in SELECTION_TABLES.items():
        points = sources.path(f"selection_{experiment}_points")
        if points is None or not points.exists():
            continue
        ran = True
        frame = pd.read_csv(points)
        seeds = frame["seed"].nunique() if "seed" in frame else 1
        body += [f"## {experiment}", "",
                 f"{len(frame)} points ({int(frame.get('reused', pd.Series([])).sum())} reused "
                 f"from the store), {seeds} seed(s).", ""]
        for name, what in tables:
            path = sources.path(name)
            if path is not None and path.exists():
                table = pd.read_csv(path)
                if name == "selection_schedule_fits":
                    table = table[["variant", "metric", "n_points", "b", "b_lo", "b_hi", "r2",
                                   "best_law"]]
                body += [f"{what.capitalize()}:", "", markdown_table(table), ""]
        if experiment == "schedule" and sources.exists("selection_schedule_report"):
            report = sources.path("selection_schedule_report")
            assert report is not None
            claims = re.search(r"^## Claims\n(.*?)(?=^## )", report.read_text(), re.S | re.M)
            if claims:
                body += ["Claims, as the report judges them:", "", claims[1].strip(), ""]
        plot = sources.path(f"selection_{experiment}_plot")
        if plot is not None and plot.exists():
            figures.append(plot)
            body += [image(plot, f"{experiment} experiment"), ""]
    if not ran:
        body += ["No selection experiment has run here yet: `kedro run --pipelines=selection` "
                 "runs them, then `make results` writes this page."]
    return "\n".join(body), figures
