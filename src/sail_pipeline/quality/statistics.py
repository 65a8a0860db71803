"""SAIL-Caption's Table 1 for any caption sources: averages, distributions, unique n-grams."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sail_pipeline.quality.text import unique_ngrams  # noqa: E402

# The columns of the Markdown table, in SAIL-Caption's order; the histograms show every signal.
TABLE_SIGNALS = ("words", "nouns", "verbs", "adjectives", "distinct_2", "lexical_richness",
                 "word_repetition_ratio", "clip_score", "image_gain", "judge_vir", "judge_ita")


def source_statistics(signals: pd.DataFrame, captions: pd.DataFrame,
                      signal_names: tuple[str, ...]) -> pd.DataFrame:
    """One row per source: rows, mean of every signal, unique 1-4-grams over the source."""
    rows = []
    for source, group in signals.groupby("source", sort=False):
        texts = captions.loc[captions["source"] == source, "caption"]
        row: dict[str, float | str | int] = {"source": str(source), "captions": len(group)}
        for n in (1, 2, 3, 4):
            row[f"unique_{n}grams"] = unique_ngrams(texts, n)
        for name in signal_names:
            if name in group:
                row[name] = float(np.nanmean(group[name])) if group[name].notna().any() \
                    else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def paired_ids(signals: pd.DataFrame, sources: list[str]) -> set[str]:
    """Ids that have a row in every one of `sources`: the fair, same-image comparison."""
    sets = [set(signals.loc[signals["source"] == s, "id"]) for s in sources]
    return set.intersection(*sets) if sets else set()


def markdown(table: pd.DataFrame, columns: tuple[str, ...]) -> str:
    shown = ["source", "captions", "unique_1grams", "unique_4grams",
             *[c for c in columns if c in table]]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for _, row in table.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            if isinstance(value, str):
                cells.append(value)
            elif column in ("captions",) or column.startswith("unique_"):
                cells.append(f"{int(value)}")
            else:
                cells.append("–" if pd.isna(value) else f"{value:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def histograms(signals: pd.DataFrame, signal_names: tuple[str, ...]):
    """A grid with one panel per signal, every source overlaid (matplotlib Figure)."""
    names = [n for n in signal_names if n in signals and signals[n].notna().any()]
    cols = 4
    rows = max(1, -(-len(names) // cols))
    figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        values = signals[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        bins = np.histogram_bin_edges(finite, bins=30) if finite.size else 10
        for source, group in signals.groupby("source", sort=False):
            data = group[name].to_numpy(dtype=float)
            data = data[np.isfinite(data)]
            if data.size:
                axis.hist(data, bins=bins, alpha=0.5, label=str(source), density=True)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def funnel_chart(funnel: pd.DataFrame):
    """Bars of each rule's catch per source (the steps with a count)."""
    rules = funnel[~funnel["step"].isin(["input", "kept", "rejected"])]
    table = rules.pivot(index="step", columns="source", values="count").fillna(0)
    table = table[(table > 0).any(axis=1)]
    figure, axis = plt.subplots(figsize=(8, 0.4 * max(3, len(table)) + 1))
    if len(table):
        table.plot.barh(ax=axis)
    axis.set_xlabel("captions rejected by the rule (a caption may fail several)")
    axis.set_title("quality filter: what each rule caught")
    figure.tight_layout()
    return figure
