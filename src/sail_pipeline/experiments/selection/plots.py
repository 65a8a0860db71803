"""The selection experiments' figures: what a reader looks at instead of the tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def quality_figure(stats: pd.DataFrame, taus: pd.DataFrame):
    """Left: each candidate's mean average against subset size; right: Kendall's τ between
    the rankings at every two sizes."""
    figure, (curves, grid) = plt.subplots(1, 2, figsize=(12, 4.8),
                                          gridspec_kw={"width_ratios": [3, 2]})
    for candidate, group in stats.groupby("candidate"):
        group = group.sort_values("size")
        curves.errorbar(group["size"], group["mean"], yerr=group["std"].fillna(0), marker="o",
                        capsize=3, label=candidate)
    curves.set_xscale("log")
    sizes = sorted(stats["size"].unique())
    curves.set_xticks(sizes, [str(n) for n in sizes])
    curves.minorticks_off()
    curves.set_xlabel("rows of the candidate (log)")
    curves.set_ylabel("benchmark average after SFT (mean ± sd over seeds)")
    curves.set_title("Quality evaluation: each candidate alone")
    curves.legend(fontsize=8, loc="best")
    image = grid.imshow(taus.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu")
    labels = [str(s) for s in taus.index]
    grid.set_xticks(range(len(labels)), labels)
    grid.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            tau = float(taus.iloc[i, j])
            grid.text(j, i, f"{tau:.2f}", ha="center", va="center",
                      color="white" if abs(tau) > 0.5 else "black")
    grid.set_title("Rank stability: Kendall's τ between sizes")
    figure.colorbar(image, ax=grid, fraction=0.046)
    figure.tight_layout()
    return figure


def composition_figure(effects: pd.DataFrame):
    """Each variant's change against the base per 100 rows removed (groups differ in size),
    with its t-interval over the paired seeds."""
    figure, axis = plt.subplots(figsize=(7, 0.6 * max(len(effects), 2) + 1.5))
    mean = effects["delta_per_100_rows"]
    errors = [(mean - effects["delta_per_100_rows_lo"]).abs().fillna(0),
              (effects["delta_per_100_rows_hi"] - mean).abs().fillna(0)]
    axis.barh(effects["variant"], mean, xerr=errors, capsize=4,
              color=["tab:red" if d < 0 else "tab:green" for d in mean])
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_xlabel("change of the benchmark average per 100 rows removed\n(mean with its "
                    "t-interval over seeds, paired by seed)")
    axis.set_title("Composition evaluation")
    figure.tight_layout()
    return figure


def incremental_figure(trajectory: pd.DataFrame, min_gain: float, alpha: float):
    """Each candidate tried, in order: its gain over the kept pool (mean over seeds, paired)
    with the one-sided lower bound the keep rule tests, kept (green) or rejected (red), and
    the gain it had to be shown to beat."""
    tried = trajectory[trajectory["step"] > 0]
    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(trajectory)), 4.8))
    axis.axhline(min_gain, color="black", linestyle="--", linewidth=0.8,
                 label=f"gain to beat ({min_gain:g})")
    for kept, colour, name in ((True, "tab:green", "kept"), (False, "tab:red", "rejected")):
        part = tried[tried["kept"] == kept]
        lower = (part["delta"] - part["delta_lo"]).fillna(0.0)
        axis.errorbar(part["step"], part["delta"], yerr=[lower, lower * 0], fmt="o",
                      color=colour, capsize=3, label=name)
    axis.set_xticks(tried["step"], tried["candidate"], rotation=30, ha="right")
    axis.set_ylabel(f"gain in the average over the kept pool\n(paired by seed; bar: one-sided "
                    f"{1 - alpha:.0%} lower bound)")
    axis.set_title(f"Individual Select (paired one-sided t-test, alpha {alpha:g})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
