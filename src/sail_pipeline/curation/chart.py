"""The curation funnel as a picture: where the input went, reason by reason."""

from __future__ import annotations

import pandas as pd

from sail_pipeline.curation.funnel import NOTE, TOTAL

_STAGE_COLOURS = {TOTAL: "#4c72b0", "ingest": "#dd8452", "validate": "#c44e52",
                  "dedup": "#8172b3", NOTE: "#55a868"}


def funnel_chart(funnel: pd.DataFrame):
    """Horizontal bars: the totals, then every reason and normalisation note that occurred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = funnel[(funnel["stage"] == TOTAL) | (funnel["count"] > 0)].reset_index(drop=True)
    labels = [reason if stage == TOTAL else f"{stage}: {reason}"
              for stage, reason in zip(shown["stage"], shown["reason"], strict=True)]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.2))
    positions = range(len(shown))[::-1]  # first row on top
    bars = axis.barh(list(positions), shown["count"],
                     color=[_STAGE_COLOURS.get(stage, "grey") for stage in shown["stage"]])
    axis.bar_label(bars, padding=3, fontsize=8)
    axis.set_yticks(list(positions))
    axis.set_yticklabels(labels, fontsize=8)
    axis.set_xlabel("records")
    axis.set_title("Curation funnel (notes: kept after normalising)")
    axis.margins(x=0.12)
    figure.tight_layout()
    return figure
