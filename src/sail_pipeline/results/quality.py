"""Results: curation, the captioner and caption quality, from `make run`'s data."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sail_pipeline.results.page import Sources, image, markdown_table, page


def _csv(sources: Sources, name: str) -> pd.DataFrame | None:
    path = sources.path(name)
    return pd.read_csv(path) if path is not None and path.exists() else None


def _figure(sources: Sources, name: str) -> Path | None:
    path = sources.path(name)
    return path if path is not None and path.exists() else None


@page("quality", "Results: curation, captions and their quality (`make run`)",
      run_key="__default__")
def quality_page(sources: Sources) -> tuple[str, list[Path]]:
    body: list[str] = []
    figures: list[Path] = []

    def section(title: str, text: str, table: pd.DataFrame | None, chart: str | None,
                caption: str) -> None:
        if table is None:
            return
        body.extend([f"## {title}", "", text, "", markdown_table(table), ""])
        figure = _figure(sources, chart) if chart else None
        if figure is not None:
            figures.append(figure)
            body.extend([image(figure, caption), ""])

    funnel = _csv(sources, "curation_funnel")
    if funnel is not None:
        funnel = funnel[(funnel["count"] > 0) | (funnel["stage"] == "total")]
    section("Curation", "Every record of the sources, kept or quarantined with its reason "
            "(reasons with no record left out). See [curation](../guides/curation.md).",
            funnel, "curation_funnel_chart", "curation funnel")
    section("The captioner on held-out scenes",
            "Caption F1 and its parts against the world's truth, on scenes no caption "
            "model saw. See [captioning](../guides/captioning.md).",
            _csv(sources, "captioner_heldout_scores"), "captioner_heldout_chart",
            "captioner on held-out scenes")
    quality = _csv(sources, "quality_funnel")
    if quality is not None:
        quality = quality.pivot(index="step", columns="source", values="count")
        quality = quality.loc[[s for s in dict.fromkeys(_csv(sources, "quality_funnel")["step"])]]
        quality = quality.reset_index().fillna(0)
        quality[quality.columns[1:]] = quality[quality.columns[1:]].astype(int)
    section("The quality filter", "Per caption source: how many captions each rule rejected "
            "(a caption can fail several) and how many were kept. See "
            "[caption quality](../guides/quality.md).", quality, "quality_funnel_chart",
            "quality funnel")
    statistics = sources.path("quality_statistics")
    if statistics is not None and statistics.exists():
        body.extend(["## Caption statistics", "",
                     re.sub(r"^## ", "### ", statistics.read_text(), flags=re.M).strip(), ""])
        figure = _figure(sources, "quality_histograms")
        if figure is not None:
            figures.append(figure)
            body.extend([image(figure, "signal histograms"), ""])
    return "\n".join(body), figures
