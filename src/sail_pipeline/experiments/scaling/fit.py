"""Fit data-size scaling laws to sweep points, with bootstrap intervals and seed noise.

A sweep point is one row of `points` (variant, n, tokens, seed, one float column per metric).
The main law is log-linear, y = a + b·ln N; a power law and a saturating law are fitted beside
it so that the report can say when log-linear is clearly not the best description. All laws are
scored on the same residuals (y in its own units), so their AICs are comparable.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

LAWS = ("log_linear", "power", "saturating")

# Burnham & Anderson's rule of thumb: an AIC lower by at most 2 is not a real preference.
CLEARLY_BETTER_DELTA_AIC = 2.0

FIT_COLUMNS = [
    "variant", "metric", "n_points", "n_sizes", "n_min", "n_max", "span", "level",
    "a", "a_lo", "a_hi", "b", "b_lo", "b_hi",
    "gain_per_doubling", "gain_per_doubling_lo", "gain_per_doubling_hi",
    "r2", "r2_lo", "r2_hi", "r2_means", "rmse", "n_boot_used",
    "noise_floor_mean", "noise_floor_at_max_n",
    "aic_log_linear", "aic_power", "aic_saturating",
    "best_law", "alternative_note", "slope_excludes_zero", "note",
]


@dataclass(frozen=True)
class LawFit:
    """One fitted law: its parameters and goodness of fit on the points it was fitted to."""

    law: str
    params: dict[str, float]
    r2: float
    rmse: float
    aic: float
    n_points: int

    def predict(self, n: np.ndarray) -> np.ndarray:
        return _predict(self.law, self.params, np.asarray(n, dtype=float))


def _predict(law: str, params: dict[str, float], n: np.ndarray) -> np.ndarray:
    if law == "log_linear":
        return params["a"] + params["b"] * np.log(n)
    if law == "power":
        return params["c"] * n ** params["k"]
    if law == "saturating":
        return params["y_inf"] - params["A"] * n ** (-params["alpha"])
    raise ValueError(f"unknown law {law!r}; expected one of {LAWS}")


def _check(n: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if n.shape != y.shape:
        raise ValueError(f"n and y differ in length ({n.size} vs {y.size})")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(y))):
        raise ValueError("n and y must be finite (drop missing metric values first)")
    if np.any(n <= 0):
        raise ValueError("every N must be positive (the laws take ln N or N^k)")
    if n.size < 3:
        raise ValueError(f"{n.size} point(s): at least 3 are needed to fit a law")
    if np.unique(n).size < 2:
        raise ValueError(f"all {n.size} points have the same N ({n[0]:g}): no slope to fit")
    return n, y


def _score(law: str, params: dict[str, float], n: np.ndarray, y: np.ndarray) -> LawFit | None:
    with np.errstate(all="ignore"):
        pred = _predict(law, params, n)
    if not (all(math.isfinite(v) for v in params.values()) and np.all(np.isfinite(pred))):
        return None
    m = y.size
    rss = float(np.sum((y - pred) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    # Below float precision every law fits "perfectly"; flooring the RSS there keeps the AIC
    # from ranking laws by rounding noise (it then prefers the one with fewer parameters).
    scale = max(1.0, float(np.max(np.abs(y))))
    rss_floor = m * (1e-9 * scale) ** 2
    aic = m * math.log(max(rss, rss_floor) / m) + 2 * len(params)
    r2 = 1.0 - rss / tss if tss > 0 else float("nan")
    return LawFit(law=law, params=dict(params), r2=r2, rmse=math.sqrt(rss / m), aic=aic,
                  n_points=m)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xm, ym = x.mean(), y.mean()
    b = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
    return float(ym - b * xm), b


def fit_log_linear(n: np.ndarray, y: np.ndarray) -> LawFit:
    """y = a + b·ln N by ordinary least squares.

    Raises ValueError for fewer than 3 points, a single distinct N, non-positive N or NaNs.
    """
    n, y = _check(n, y)
    a, b = _ols(np.log(n), y)
    fit = _score("log_linear", {"a": a, "b": b}, n, y)
    assert fit is not None  # OLS on finite, non-degenerate input is always finite
    return fit


def _curve_fit(func, x, y, starts, bounds=(-np.inf, np.inf)):
    """The least-RSS curve_fit over several starting points; None when none converges."""
    from scipy.optimize import OptimizeWarning, curve_fit

    best, best_rss = None, math.inf
    for p0 in starts:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # A singular covariance only means the errors are unknown; the fit itself
                # may be fine, and it is judged by its residuals below.
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, _ = curve_fit(func, x, y, p0=p0, bounds=bounds, maxfev=20000)
                rss = float(np.sum((y - func(x, *popt)) ** 2))
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        if np.all(np.isfinite(popt)) and math.isfinite(rss) and rss < best_rss:
            best, best_rss = popt, rss
    return best


def fit_power(n: np.ndarray, y: np.ndarray) -> LawFit | None:
    """y = c·N^k; None when the fit does not converge.

    With all y > 0 the fit is OLS of ln y on ln N (exact, always converges); otherwise
    curve_fit in linear space. Either way r2/rmse/aic are computed on y itself, so they are
    comparable with the other laws (the log-space fit is not least squares in y, which can
    only make its AIC slightly worse).
    """
    n, y = _check(n, y)
    if np.all(y > 0):
        ln_c, k = _ols(np.log(n), np.log(y))
        return _score("power", {"c": math.exp(ln_c), "k": k}, n, y)
    # Fitting in N / min N keeps c of the order of y rather than y·N^-k.
    n0 = float(n.min())
    x = n / n0
    a, b = _ols(np.log(x), y)
    level = float(np.mean(y)) or 1.0
    starts = [(level, 0.0), (a if a != 0 else level, b / level if level else 0.1),
              (level, 0.5), (level, -0.5)]
    popt = _curve_fit(lambda x, c, k: c * x ** k, x, y, starts)
    if popt is None:
        return None
    c_scaled, k = (float(v) for v in popt)
    return _score("power", {"c": c_scaled * n0 ** (-k), "k": k}, n, y)


def fit_saturating(n: np.ndarray, y: np.ndarray) -> LawFit | None:
    """y = y_inf − A·N^(−alpha) with alpha > 0; None when it does not converge.

    Needs at least 3 distinct N and more points than its 3 parameters; with fewer the curve
    passes through the data exactly and its AIC would mean nothing.
    """
    n, y = _check(n, y)
    if np.unique(n).size < 3 or n.size <= 3:
        return None
    # In x = N / min N the amplitude is the gap at the smallest N, which makes a start easy.
    n0 = float(n.min())
    x = n / n0
    _, b = _ols(np.log(x), y)
    spread = float(np.ptp(y)) or max(abs(float(np.mean(y))), 1.0) * 0.1
    y_first = float(np.mean(y[n == n0]))
    # Rising data saturate from below (A > 0), falling data from above (A < 0).
    y_inf0 = float(np.max(y)) + 0.1 * spread if b >= 0 else float(np.min(y)) - 0.1 * spread
    starts = [(y_inf0, y_inf0 - y_first, alpha) for alpha in (0.1, 0.5, 1.0, 2.0)]
    bounds = ([-np.inf, -np.inf, 1e-4], [np.inf, np.inf, 10.0])
    popt = _curve_fit(lambda x, y_inf, amp, alpha: y_inf - amp * x ** (-alpha), x, y, starts,
                      bounds)
    if popt is None:
        return None
    y_inf, amp, alpha = (float(v) for v in popt)
    return _score("saturating", {"y_inf": y_inf, "A": amp * n0 ** alpha, "alpha": alpha}, n, y)


def _interval(values: np.ndarray, level: float, axis: int = 0):
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as wanted
        return np.nanpercentile(values, [tail, 100 - tail], axis=axis)


def bootstrap_log_linear(n: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0,
                         level: float = 0.95) -> dict:
    """Percentile bootstrap of the log-linear fit, resampling the (N, seed) points.

    Returns the full-data estimates `a`, `b`, `gain_per_doubling` (b·ln 2), `r2`, their
    intervals (`<name>_lo`, `<name>_hi`), `n_boot_used` (resamples with ≥ 2 distinct N),
    `level`, and a band: `band_n` (50 N log-spaced over the observed range), `band_fit` (the
    full-data curve) and `band_lo`/`band_hi` (pointwise percentiles of the resampled curves).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    fit = fit_log_linear(n, y)
    n, y = _check(n, y)
    x = np.log(n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n.size, size=(n_boot, n.size))
    xs, ys = x[idx], y[idx]
    # A resample drawn from one N has no slope; it is dropped rather than counted as 0.
    usable = np.ptp(xs, axis=1) > 0
    xs, ys = xs[usable], ys[usable]
    xc = xs - xs.mean(axis=1, keepdims=True)
    yc = ys - ys.mean(axis=1, keepdims=True)
    b = np.sum(xc * yc, axis=1) / np.sum(xc ** 2, axis=1)
    a = ys.mean(axis=1) - b * xs.mean(axis=1)
    rss = np.sum((ys - (a[:, None] + b[:, None] * xs)) ** 2, axis=1)
    tss = np.sum(yc ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tss > 0, 1 - rss / tss, np.nan)
    band_n = np.geomspace(n.min(), n.max(), 50)
    curves = a[:, None] + b[:, None] * np.log(band_n)[None, :]
    out: dict = {"level": level, "n_boot": n_boot, "n_boot_used": int(usable.sum())}
    point = {"a": fit.params["a"], "b": fit.params["b"],
             "gain_per_doubling": fit.params["b"] * math.log(2), "r2": fit.r2}
    samples = {"a": a, "b": b, "gain_per_doubling": b * math.log(2), "r2": r2}
    for name, values in samples.items():
        lo, hi = _interval(values, level) if values.size else (np.nan, np.nan)
        out[name] = point[name]
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    out["band_n"] = band_n
    out["band_fit"] = fit.predict(band_n)
    if curves.shape[0]:
        out["band_lo"], out["band_hi"] = _interval(curves, level, axis=0)
    else:
        out["band_lo"] = out["band_hi"] = np.full(band_n.shape, np.nan)
    return out


def _one_variant(points: pd.DataFrame) -> str:
    if "variant" not in points.columns:
        return ""
    variants = pd.unique(points["variant"])
    if len(variants) > 1:
        raise ValueError(f"expected the points of one variant, got {list(variants)}")
    return str(variants[0]) if len(variants) else ""


def _series(points: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, y) of the non-missing points, in a fixed order so bootstraps are reproducible."""
    if metric not in points.columns:
        raise ValueError(f"metric {metric!r} is not a column of the points")
    part = points.loc[points[metric].notna(), ["n", "seed", metric]]
    part = part.sort_values(["n", "seed"], kind="stable")
    return part["n"].to_numpy(dtype=float), part[metric].to_numpy(dtype=float)


def noise_floor(points: pd.DataFrame, metric: str) -> dict:
    """Seed-to-seed spread of `metric` for the points of one variant.

    Returns `std_by_n` (N -> std with ddof=1, only for N with ≥ 2 non-missing seeds),
    `mean` (its mean over those N), `at_max_n` (the std at the largest such N) and `max_n`
    (that N); NaN / None where no N has two seeds.
    """
    _one_variant(points)
    if metric not in points.columns:
        raise ValueError(f"metric {metric!r} is not a column of the points")
    values = points.loc[points[metric].notna(), ["n", metric]]
    stds = values.groupby("n")[metric].agg(["std", "count"])
    stds = stds[stds["count"] >= 2].sort_index()
    std_by_n = {int(k): float(v) for k, v in stds["std"].items()}
    if not std_by_n:
        return {"std_by_n": {}, "mean": float("nan"), "at_max_n": float("nan"), "max_n": None}
    max_n = max(std_by_n)
    return {"std_by_n": std_by_n, "mean": float(np.mean(list(std_by_n.values()))),
            "at_max_n": std_by_n[max_n], "max_n": max_n}


# A law is a claim about the shape of the curve: through two sizes every law is a straight
# line, and the saturating law has three parameters. Fewer sizes than this are not fitted.
MIN_SIZES = 3

NOTHING_TO_FIT = "all values equal: nothing to fit"
TOO_FEW_POINTS = "too few points"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def skip_reason(n: np.ndarray, y: np.ndarray | None = None) -> str | None:
    """Why these non-missing points cannot be fitted, or None when they can.

    Too few points: fewer than 3 points or fewer than `MIN_SIZES` distinct N. Nothing to fit:
    every value `y` is the same (a score stuck at its floor, e.g. 0.0 everywhere), where a
    least-squares fit would report a slope of exactly 0 with an interval of [0, 0] and call
    the log law best. Both reasons are given when both hold.
    """
    n = np.asarray(n, dtype=float)
    reasons = []
    sizes = np.unique(n).size
    if len(n) < 3 or sizes < MIN_SIZES:
        reasons.append(f"{TOO_FEW_POINTS}: {_plural(len(n), 'point')} at "
                       f"{_plural(sizes, 'size')} (a law needs {MIN_SIZES} sizes or more)")
    if y is not None and len(y):
        values = np.asarray(y, dtype=float)
        if np.ptp(values) == 0:
            reasons.append(f"{NOTHING_TO_FIT} ({_plural(len(values), 'point')}, every one "
                           f"{float(values[0]):.3g})")
    return "; ".join(reasons) or None


def _best_law(fits: dict[str, LawFit]) -> tuple[str, str]:
    reference = fits["log_linear"].aic
    best = min(fits.values(), key=lambda f: f.aic)
    delta = reference - best.aic
    if best.law != "log_linear" and delta > CLEARLY_BETTER_DELTA_AIC:
        return best.law, f"{best.law} fits clearly better (ΔAIC {delta:.1f})"
    return "log_linear", ""


def fit_metric(points_of_one_variant: pd.DataFrame, metric: str, n_boot: int = 2000,
               seed: int = 0, level: float = 0.95) -> dict:
    """One row of the fit table for one variant and metric (see FIT_COLUMNS).

    Raises ValueError when the non-missing points cannot be fitted (see `skip_reason`).
    """
    variant = _one_variant(points_of_one_variant)
    n, y = _series(points_of_one_variant, metric)
    reason = skip_reason(n, y)
    if reason:
        raise ValueError(f"{variant}/{metric}: {reason}")
    boot = bootstrap_log_linear(n, y, n_boot=n_boot, seed=seed, level=level)
    laws: dict[str, LawFit] = {"log_linear": fit_log_linear(n, y)}
    for law, fitter in (("power", fit_power), ("saturating", fit_saturating)):
        fit = fitter(n, y)
        if fit is not None:
            laws[law] = fit
    best_law, note = _best_law(laws)
    floor = noise_floor(points_of_one_variant, metric)
    # R² of the seed means: how straight the curve is, without the seed noise that caps the
    # R² of the individual points (the form scaling-law papers report).
    means = pd.Series(y).groupby(n).mean()
    r2_means = fit_log_linear(means.index.to_numpy(float), means.to_numpy(float)).r2 \
        if means.size >= 3 else float("nan")
    row = {"variant": variant, "metric": metric, "n_points": int(n.size),
           "n_sizes": int(np.unique(n).size), "n_min": int(n.min()), "n_max": int(n.max()),
           "span": float(n.max() / n.min()), "level": level,
           "rmse": laws["log_linear"].rmse, "n_boot_used": boot["n_boot_used"],
           "r2_means": r2_means,
           "noise_floor_mean": floor["mean"], "noise_floor_at_max_n": floor["at_max_n"],
           "best_law": best_law, "alternative_note": note,
           "slope_excludes_zero": bool(boot["b_lo"] > 0 or boot["b_hi"] < 0), "note": ""}
    for name in ("a", "b", "gain_per_doubling", "r2"):
        for suffix in ("", "_lo", "_hi"):
            row[name + suffix] = boot[name + suffix]
    for law in LAWS:
        row[f"aic_{law}"] = laws[law].aic if law in laws else float("nan")
    return {column: row[column] for column in FIT_COLUMNS}


def fit_sweep(points: pd.DataFrame, metrics: list[str], n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> pd.DataFrame:
    """The fit table: one row per (variant, metric), variants in order of appearance.

    A pair that cannot be fitted (too few points: fewer than 3 non-missing points or fewer
    than `MIN_SIZES` distinct N; all values equal; or a metric that is not a column) stays in
    the table with NaNs and a `note` saying why (`skip_reason`).
    """
    rows = []
    for variant in pd.unique(points["variant"]):
        part = points[points["variant"] == variant]
        for metric in metrics:
            if metric not in part.columns:
                n = np.array([])
                reason = f"metric {metric!r} not in the points"
            else:
                n, y = _series(part, metric)
                reason = skip_reason(n, y)
            if reason is None:
                rows.append(fit_metric(part, metric, n_boot=n_boot, seed=seed, level=level))
                continue
            row = dict.fromkeys(FIT_COLUMNS, float("nan"))
            row.update(variant=str(variant), metric=metric, n_points=int(len(n)),
                       n_sizes=int(np.unique(n).size), level=level, best_law=None,
                       alternative_note="", slope_excludes_zero=pd.NA, note=reason)
            rows.append(row)
    table = pd.DataFrame(rows, columns=FIT_COLUMNS)
    # Nullable so that an unfitted pair reads as unknown, not as "slope includes zero".
    table["slope_excludes_zero"] = table["slope_excludes_zero"].astype("boolean")
    return table


def bands_for(points: pd.DataFrame, metric: str, n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> dict[str, dict]:
    """variant -> bootstrap_log_linear result for `metric`, as `plot_metric` takes it.

    Same data order and seed as `fit_sweep`, so the bands match the table's intervals.
    """
    bands = {}
    for variant in pd.unique(points["variant"]):
        part = points[points["variant"] == variant]
        if metric not in part.columns:
            continue
        n, y = _series(part, metric)
        if skip_reason(n, y) is None:
            bands[str(variant)] = bootstrap_log_linear(n, y, n_boot=n_boot, seed=seed,
                                                       level=level)
    return bands


def _cells(points: pd.DataFrame, variant: str, metric: str) -> dict[int, np.ndarray]:
    part = points[(points["variant"] == variant) & points[metric].notna()]
    part = part.sort_values(["n", "seed"], kind="stable")
    return {int(k): g[metric].to_numpy(dtype=float) for k, g in part.groupby("n")}


def _curvatures(cells: dict[int, np.ndarray], common: list[int], boot: list[np.ndarray]
                ) -> tuple[float, np.ndarray]:
    """The quadratic coefficient c of y = a + b·x + c·x², x = ln N centred: 0 on a log-linear
    curve, > 0 on one that bends upward towards linear in N (y = a + k·N is convex in ln N),
    < 0 on one that saturates. (point estimate, one value per bootstrap row of `boot`)."""
    x = np.concatenate([np.full(cells[k].size, math.log(k)) for k in common])
    xc = x - x.mean()
    design = np.column_stack([np.ones_like(xc), xc, xc ** 2])
    solve = np.linalg.pinv(design)
    point = np.concatenate([cells[k] for k in common])
    return float((solve @ point)[2]), np.hstack(boot) @ solve[2]


def compare_variants(points: pd.DataFrame, variant_a: str, variant_b: str, metric: str,
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """variant_a − variant_b on `metric`, paired by N.

    `per_n` holds the difference of the seed means at each N present in both; `mean_diff` is
    their mean (each N weighs the same). The slopes are log-linear fits on the points at the
    common N only, so both cover the same range; `curvature_diff` (3 or more common N) is the
    difference of their bends in ln N (see `_curvatures`): the shape, apart from the level. Intervals come from one bootstrap that
    resamples seeds within each (variant, N) cell, so the design over N stays fixed; a cell
    with a single seed contributes no seed noise, which the `note` then says. `all_equal` is
    True when every value of both variants at the common N is the same (nothing to compare).
    """
    out: dict = {"variant_a": variant_a, "variant_b": variant_b, "metric": metric,
                 "common_n": [], "mean_diff": float("nan"), "diff_lo": float("nan"),
                 "diff_hi": float("nan"), "slope_diff": float("nan"),
                 "slope_diff_lo": float("nan"), "slope_diff_hi": float("nan"),
                 "curvature_diff": float("nan"), "curvature_diff_lo": float("nan"),
                 "curvature_diff_hi": float("nan"), "per_n": {}, "level": level,
                 "all_equal": False, "note": ""}
    if metric not in points.columns:
        out["note"] = f"metric {metric!r} not in the points"
        return out
    cells_a, cells_b = _cells(points, variant_a, metric), _cells(points, variant_b, metric)
    common = sorted(set(cells_a) & set(cells_b))
    if not common:
        out["note"] = f"no N with {metric} in both {variant_a} and {variant_b}"
        return out
    per_n = {k: float(cells_a[k].mean() - cells_b[k].mean()) for k in common}
    out.update(common_n=common, per_n=per_n, mean_diff=float(np.mean(list(per_n.values()))))

    rng = np.random.default_rng(seed)
    boot = {}
    for name, cells in (("a", cells_a), ("b", cells_b)):
        # One (n_boot, seeds) block per N: resampled seeds, in the order of `common`.
        boot[name] = [v[rng.integers(0, v.size, size=(n_boot, v.size))]
                      for v in (cells[k] for k in common)]
    diffs = np.column_stack([ra.mean(axis=1) - rb.mean(axis=1)
                             for ra, rb in zip(boot["a"], boot["b"], strict=True)])
    lo, hi = _interval(diffs.mean(axis=1), level)
    out.update(diff_lo=float(lo), diff_hi=float(hi))

    notes = []
    values = np.concatenate([cells[k] for cells in (cells_a, cells_b) for k in common])
    if np.ptp(values) == 0:
        # Both variants score the same at every point (a floor, such as 0.0 everywhere): the
        # difference is exactly 0 with an interval of [0, 0], which measures nothing.
        out["all_equal"] = True
        notes.append(f"all values equal in both variants ({float(values[0]):.3g}): "
                     "nothing to compare")
    single = [f"{v}@{k}" for v, cells in ((variant_a, cells_a), (variant_b, cells_b))
              for k in common if cells[k].size < 2]
    if single:
        notes.append(f"single seed (no seed noise in the CI) at {', '.join(single)}")
    if len(common) < 2:
        notes.append("one common N: no slope difference")
    else:
        slopes = {}
        for name, cells in (("a", cells_a), ("b", cells_b)):
            x = np.concatenate([np.full(cells[k].size, math.log(k)) for k in common])
            xc = x - x.mean()
            ys = np.hstack(boot[name])
            point = np.concatenate([cells[k] for k in common])
            slopes[name] = (float(np.sum(xc * (point - point.mean())) / np.sum(xc ** 2)),
                            (ys - ys.mean(axis=1, keepdims=True)) @ xc / np.sum(xc ** 2))
        lo, hi = _interval(slopes["a"][1] - slopes["b"][1], level)
        out.update(slope_diff=slopes["a"][0] - slopes["b"][0], slope_diff_lo=float(lo),
                   slope_diff_hi=float(hi))
    if len(common) >= 3:
        bends = {name: _curvatures(cells, common, boot[name])
                 for name, cells in (("a", cells_a), ("b", cells_b))}
        lo, hi = _interval(bends["a"][1] - bends["b"][1], level)
        out.update(curvature_diff=bends["a"][0] - bends["b"][0], curvature_diff_lo=float(lo),
                   curvature_diff_hi=float(hi))
    out["note"] = "; ".join(notes)
    return out
