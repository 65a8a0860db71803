"""Figures of a scaling sweep: metric against N with the log-linear fits, and their residuals.

Figures are built with `matplotlib.figure.Figure` rather than pyplot: nothing is registered in
pyplot's global figure list (no leak, no "too many figures" warning over a sweep's dozens of
plots) and no backend is switched for the caller; `savefig` renders with Agg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sail_pipeline.experiments.scaling.plan import size_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Each variant's markers are shifted by this fraction of a doubling, so that variants measured
# at the same N do not hide each other; fits and bands stay at the true N.
_DODGE_OCTAVES = 0.04


def _fmt(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3g}"


def variant_colour(index: int) -> str:
    """The colour of the `index`-th variant of a sweep (in the order its points list them),
    in these plots and in MLflow's chart view alike: matplotlib's tab10."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["tab10"](index % 10))


def _variants(points: pd.DataFrame, metric: str) -> list[str]:
    if metric not in points.columns:
        raise ValueError(f"metric {metric!r} is not a column of the points")
    present = points[points[metric].notna()]
    return [str(v) for v in pd.unique(present["variant"])]


def _fit_row(fits: pd.DataFrame, variant: str, metric: str) -> pd.Series | None:
    rows = fits[(fits["variant"] == variant) & (fits["metric"] == metric)]
    return None if rows.empty else rows.iloc[0]


def _fitted(row: pd.Series | None) -> bool:
    return row is not None and not (pd.isna(row["a"]) or pd.isna(row["b"]))


def _dodge(i: int, count: int) -> float:
    return 2.0 ** (_DODGE_OCTAVES * (i - (count - 1) / 2))


X_LABEL = "pretraining samples N (log scale)"


def _log2_axis(ax: Axes, ns: list[int], label: str = X_LABEL) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [size_label(n) for n in ns])
    # The log locator's minor ticks fall between the sweep sizes and mean nothing here.
    ax.set_xticks([], minor=True)
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


def _new_figure(title: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    return fig, ax


def plot_metric(points: pd.DataFrame, fits: pd.DataFrame, metric: str,
                bands: dict[str, dict] | None = None, title: str | None = None,
                x_label: str = X_LABEL) -> Figure:
    """`metric` against N on a log2 axis, one colour per variant.

    Per variant: every (N, seed) point (small), the seed mean at each N with ± one std (large),
    the log-linear fit from `fits` (the `fit_sweep` table) and, when `bands[variant]` is given
    (a `seed_log_linear` result), its confidence band.
    """
    fig, ax = _new_figure(title or metric)
    variants = _variants(points, metric)
    for i, variant in enumerate(variants):
        colour = variant_colour(i)
        part = points[(points["variant"] == variant) & points[metric].notna()]
        shift = _dodge(i, len(variants))
        ax.scatter(part["n"] * shift, part[metric], s=10, color=colour, alpha=0.45,
                   linewidths=0)
        cells = part.groupby("n")[metric].agg(["mean", "std"]).sort_index()
        ax.errorbar(cells.index * shift, cells["mean"], yerr=cells["std"].fillna(0.0), fmt="o",
                    ms=6, color=colour, capsize=3, elinewidth=1)
        row = _fit_row(fits, variant, metric)
        band = (bands or {}).get(variant)
        if band is not None:
            ax.fill_between(band["band_n"], band["band_lo"], band["band_hi"], color=colour,
                            alpha=0.18, linewidth=0)
        if _fitted(row):
            grid = np.geomspace(part["n"].min(), part["n"].max(), 100)
            label = (f"{variant}: b={_fmt(row['b'])} [{_fmt(row['b_lo'])}, "
                     f"{_fmt(row['b_hi'])}], R²={_fmt(row['r2'])}")
            ax.plot(grid, row["a"] + row["b"] * np.log(grid), color=colour, linewidth=1.6,
                    label=label)
        else:
            note = row["note"] if row is not None and row["note"] else "no fit"
            # An invisible artist carries the legend entry of a variant without a fit line.
            ax.plot([], [], color=colour, marker="o", linestyle="none",
                    label=f"{variant}: {note}")
    ns = sorted({int(n) for n in points.loc[points[metric].notna(), "n"]})
    _log2_axis(ax, ns, x_label)
    ax.set_ylabel(metric)
    if variants:
        ax.legend(fontsize="small", loc="best")
    return fig


def plot_residuals(points: pd.DataFrame, fits: pd.DataFrame, metric: str) -> Figure:
    """Residuals y − (a + b·ln N) of each variant's log-linear fit against N.

    The line through the mean residual per N shows curvature: a log-linear law leaves it flat,
    a saturating one bends it into an arch.
    """
    from matplotlib import colormaps

    fig, ax = _new_figure(f"{metric}: residuals of the log-linear fit")
    variants = _variants(points, metric)
    colours = colormaps["tab10"]
    ax.axhline(0.0, color="black", linewidth=0.8)
    for i, variant in enumerate(variants):
        row = _fit_row(fits, variant, metric)
        if not _fitted(row):
            continue
        colour = colours(i % 10)
        part = points[(points["variant"] == variant) & points[metric].notna()]
        residual = part[metric] - (row["a"] + row["b"] * np.log(part["n"].astype(float)))
        shift = _dodge(i, len(variants))
        ax.scatter(part["n"] * shift, residual, s=14, color=colour, alpha=0.6, linewidths=0)
        means = residual.groupby(part["n"]).mean().sort_index()
        ax.plot(means.index * shift, means.to_numpy(), color=colour, marker="o", ms=5,
                label=f"{variant}: RMSE {_fmt(row['rmse'])}")
    ns = sorted({int(n) for n in points.loc[points[metric].notna(), "n"]})
    _log2_axis(ax, ns)
    ax.set_ylabel(f"residual of {metric}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    return fig


# The x-axes a point can be plotted against: what N counts, what the model read, and how often
# it was updated. A curve against N that is straight against steps too may be counting steps.
X_AXES = {"n": "pretraining samples N (distinct)",
          "tokens": "pretraining tokens (distinct, one pass)",
          "steps": "pretraining optimizer steps"}


def plot_axes(points: pd.DataFrame, metric: str) -> Figure:
    """`metric` against each of `X_AXES` (log scale), one panel each, every variant in its
    colour: its points and the mean at each N. The columns a sweep lacks are left out (an
    older point store has no `steps`)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    axes_shown = [x for x in X_AXES if x in points.columns and points[x].notna().any()]
    variants = _variants(points, metric)
    fig = Figure(figsize=(5.2 * len(axes_shown), 4.4), layout="constrained")
    panels = fig.subplots(1, len(axes_shown), squeeze=False)[0]
    for ax, x in zip(panels, axes_shown, strict=True):
        for i, variant in enumerate(variants):
            part = points[(points["variant"] == variant) & points[metric].notna()
                          & points[x].notna()]
            colour = variant_colour(i)
            ax.scatter(part[x], part[metric], s=12, color=colour, alpha=0.5, linewidths=0)
            means = part.groupby(part["n"].rename("size"))[[x, metric]].mean().sort_values(x)
            ax.plot(means[x], means[metric], color=colour, marker="o", ms=4, label=variant)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the minor ticks' labels overlap
        ax.set_xlabel(f"{X_AXES[x]} (log scale)")
        ax.set_ylabel(metric)
        ax.grid(True, which="major", alpha=0.3)
    panels[0].legend(fontsize="small", loc="best")
    fig.suptitle(f"{metric} against data and against optimisation")
    return fig
