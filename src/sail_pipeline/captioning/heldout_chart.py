"""The captioner against the alt-text on held-out scenes, as grouped bars of fact recall."""

from __future__ import annotations

import pandas as pd

METRICS = ("object_recall", "attribute_recall", "object_precision", "attribute_precision",
           "score")


def heldout_chart(table: pd.DataFrame):
    """One group per metric, one bar per caption source; empty axes when there is no table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.6))
    shown = [m for m in METRICS if m in table.columns]
    width = 0.8 / max(1, len(table))
    for k, row in enumerate(table.itertuples(index=False)):
        values = [getattr(row, m) for m in shown]
        bars = axis.bar([i + k * width for i in range(len(shown))], values, width,
                        label=row.captions)
        axis.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    axis.set_xticks([i + width * (len(table) - 1) / 2 for i in range(len(shown))])
    axis.set_xticklabels([m.replace("_", " ").replace("score", "F1 (score)") for m in shown],
                         fontsize=8)
    axis.set_ylim(0, 1.1)
    axis.set_ylabel("against the scene's ground truth")
    scenes = int(table["scenes"].iloc[0]) if len(table) else 0
    axis.set_title(f"Captions of {scenes} held-out scenes: captioner vs alt-text")
    if len(table):
        axis.legend(fontsize=8, loc="upper left", ncols=len(table))
    figure.tight_layout()
    return figure
