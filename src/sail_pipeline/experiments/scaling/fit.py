"""Fit data-size scaling laws to sweep points, with intervals over seeds and seed noise.

A sweep point is one row of `points` (variant, n, tokens, seed, one float column per metric).
The main law is log-linear, y = a + b·ln N; a line in N, a power law and a saturating law are
fitted beside it so that the report can say when log-linear is clearly not the best
description. All laws are scored on the same points (each seed's, y in its own units), so
their AICs are comparable.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from sail_pipeline.experiments.stats import per_seed_slopes, seed_interval

LAWS = ("log_linear", "linear", "power", "saturating")

# Burnham & Anderson's rule of thumb: an AIC lower by at most 2 is not a real preference.
CLEARLY_BETTER_DELTA_AIC = 2.0

FIT_COLUMNS = [
    "variant", "metric", "n_points", "n_sizes", "n_min", "n_max", "span", "level", "seeds",
    "df", "a", "a_lo", "a_hi", "a_se", "b", "b_lo", "b_hi", "b_se",
    "gain_per_doubling", "gain_per_doubling_lo", "gain_per_doubling_hi",
    "gain_per_doubling_se", "r2", "r2_means", "rmse",
    "noise_floor_mean", "noise_floor_at_max_n",
    "aic_log_linear", "aic_linear", "aic_power", "aic_saturating",
    "lof_p_log_linear", "lof_p_linear", "extrapolated_n",
    "extrapolation_log_linear", "extrapolation_log_linear_lo", "extrapolation_log_linear_hi",
    "extrapolation_linear", "extrapolation_linear_lo", "extrapolation_linear_hi",
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
    if law == "linear":
        return params["a"] + params["k"] * n
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


def fit_linear(n: np.ndarray, y: np.ndarray) -> LawFit:
    """y = a + k·N by ordinary least squares: a curve that bends upward against ln N (what a
    sweep whose x-axis counts optimizer steps rather than data can look like)."""
    n, y = _check(n, y)
    a, k = _ols(n, y)
    fit = _score("linear", {"a": a, "k": k}, n, y)
    assert fit is not None
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
    with np.errstate(all="ignore"):  # an exponent the data drove off: no power law
        c = float(np.float64(c_scaled) * np.float64(n0) ** np.float64(-k))
    return _score("power", {"c": c, "k": k}, n, y) if math.isfinite(c) else None


# The saturating law's exponents searched (the bounds of alpha), log-spaced.
SATURATING_ALPHAS = np.geomspace(1e-4, 10.0, 400)


def fit_saturating(n: np.ndarray, y: np.ndarray) -> LawFit | None:
    """y = y_inf − A·N^(−alpha) with alpha in [1e-4, 10]; None when the data cannot fit it.

    Needs at least 3 distinct N and more points than its 3 parameters; with fewer the curve
    passes through the data exactly and its AIC would mean nothing. For a fixed alpha the law
    is a straight line in N^(−alpha), so (y_inf, A) have a closed form: every alpha of a
    log-spaced grid is tried at once and the best one is refined by a bounded scalar search
    (variable projection). This finds the least-squares fit over the whole range of alpha
    where an iterative fit from a few starts can stop early or wander off: a log-linear curve
    is the law's limit as alpha goes to 0, and there it ran to its evaluation limit.
    """
    from scipy.optimize import minimize_scalar

    n, y = _check(n, y)
    if np.unique(n).size < 3 or n.size <= 3:
        return None
    # In x = N / min N the amplitude is the gap at the smallest N: values of the order of y.
    n0 = float(n.min())
    x = n / n0

    def line(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y_inf, amplitude, RSS) of the best fit at each alpha."""
        z = x[None, :] ** (-alphas[:, None])
        zc = z - z.mean(axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            slope = (zc @ (y - y.mean())) / np.sum(zc ** 2, axis=1)
            y_inf = y.mean() - slope * z.mean(axis=1)
            rss = np.sum((y[None, :] - (y_inf[:, None] + slope[:, None] * z)) ** 2, axis=1)
        return y_inf, -slope, np.where(np.isfinite(rss), rss, np.inf)

    grid = SATURATING_ALPHAS
    rss = line(grid)[2]
    best = int(np.argmin(rss))
    if not np.isfinite(rss[best]):
        return None
    low, high = np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, grid.size - 1)])
    refined = minimize_scalar(lambda log_alpha: float(line(np.array([np.exp(log_alpha)]))[2][0]),
                              bounds=(low, high), method="bounded")
    alpha = float(np.exp(refined.x)) if refined.success and refined.fun <= rss[best] \
        else float(grid[best])
    y_inf, amp, _ = (float(v[0]) for v in line(np.array([alpha])))
    return _score("saturating", {"y_inf": y_inf, "A": amp * n0 ** alpha, "alpha": alpha}, n, y)


def seed_log_linear(n: np.ndarray, y: np.ndarray, seed: np.ndarray,
                    level: float = 0.95) -> dict:
    """The log-linear fit with the seed as the unit.

    A seed's points are its nested subsets, one per N, so they are not independent of each
    other: each seed gets its own a_s + b_s·ln N, the estimates are their means and the
    intervals t-intervals over seeds (`stats.seed_interval`, df = seeds − 1; NaN with fewer
    than 2 seeds of 2 sizes or more). Returns `a`, `b`, `gain_per_doubling` (b·ln 2), each
    with `_lo`, `_hi` and `_se`; `r2` (the pooled fit's); `seeds`, `df`, `level`; and a band:
    `band_n` (50 N log-spaced over the observed range), `band_fit` (the mean curve) and
    `band_lo`/`band_hi` (pointwise t-intervals of the seeds' curves).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    pooled = fit_log_linear(n, y)
    n, y = _check(n, y)
    seed = np.asarray(seed).ravel()
    slopes = per_seed_slopes(n, y, seed)
    intercepts = {s: float(y[seed == s].mean() - b * np.log(n[seed == s]).mean())
                  for s, b in slopes.items()}
    out: dict = {"level": level, "r2": pooled.r2}
    estimates = {"a": seed_interval(list(intercepts.values()), level),
                 "b": seed_interval(list(slopes.values()), level)}
    estimates["gain_per_doubling"] = seed_interval(
        [b * math.log(2) for b in slopes.values()], level)
    for name, estimate in estimates.items():
        out |= {name: estimate.mean, f"{name}_lo": estimate.lo, f"{name}_hi": estimate.hi,
                f"{name}_se": estimate.se}
    out |= {"seeds": estimates["b"].seeds, "df": estimates["b"].df}
    band_n = np.geomspace(n.min(), n.max(), 50)
    curves = np.array([intercepts[s] + slopes[s] * np.log(band_n) for s in slopes])
    out["band_n"] = band_n
    out["band_fit"] = curves.mean(axis=0)
    if len(slopes) >= 2:
        half = scipy_stats.t.ppf(0.5 + level / 2, len(slopes) - 1) * \
            curves.std(axis=0, ddof=1) / math.sqrt(len(slopes))
        out["band_lo"], out["band_hi"] = out["band_fit"] - half, out["band_fit"] + half
    else:
        out["band_lo"] = out["band_hi"] = np.full(band_n.shape, np.nan)
    return out


# The laws that are straight lines in a transform of N: the ones each seed can fit on its
# own points, so their lack of fit and extrapolation are tested with the seed as the unit.
LINEAR_LAWS = {"log_linear": np.log, "linear": lambda n: n}


def lack_of_fit(n: np.ndarray, y: np.ndarray, seed: np.ndarray, law: str) -> tuple[float, float]:
    """(F, p) of the lack-of-fit test of a linear law, with the seeds as pure error.

    The seeds are blocks (each its own level, shared by its N: its subsets are nested) and the
    law is tested against a free mean at every N: F = (RSS_law − RSS_free) / (sizes − 2) over
    RSS_free / ((sizes − 1)(seeds − 1)), both models with a level per seed. A small p says
    the law misses the shape of the seeds' means by more than the seeds disagree. (NaN, NaN)
    with fewer than 3 sizes or 2 seeds, or an unbalanced design.
    """
    n, y = _check(n, y)
    seed = np.asarray(seed).ravel()
    sizes, seeds = np.unique(n), np.unique(seed)
    if sizes.size < 3 or seeds.size < 2 or n.size != sizes.size * seeds.size:
        return math.nan, math.nan
    blocks = (seed[:, None] == seeds[None, :]).astype(float)
    cells = (n[:, None] == sizes[None, :]).astype(float)
    x = LINEAR_LAWS[law](n)

    def rss(design: np.ndarray) -> float:
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return float(np.sum((y - design @ coef) ** 2))

    free = rss(np.column_stack([blocks, cells[:, 1:]]))
    fitted = rss(np.column_stack([blocks, x]))
    df_lof, df_pe = sizes.size - 2, (sizes.size - 1) * (seeds.size - 1)
    tiny = 1e-12 * max(float(np.sum((y - y.mean()) ** 2)), 1e-300)
    if free <= tiny:  # no disagreement between seeds: the test has no pure error
        return (math.nan, math.nan) if fitted - free <= tiny else (math.inf, 0.0)
    f = ((fitted - free) / df_lof) / (free / df_pe)
    return float(f), float(scipy_stats.f.sf(f, df_lof, df_pe))


def extrapolation(n: np.ndarray, y: np.ndarray, seed: np.ndarray, law: str,
                  level: float = 0.95) -> dict[str, float]:
    """The law fitted by each seed on every size but the largest, asked to predict the
    largest: `error` is the mean over seeds of observed − predicted there, with a t-interval
    over seeds (`error_lo`, `error_hi`; the seed is the unit, so this is a prediction interval
    for the seeds' mean). An interval that excludes 0 is a law that does not hold beyond the
    sizes it was fitted on. NaN with fewer than 3 sizes below the largest, or 2 seeds."""
    n, y = _check(n, y)
    seed = np.asarray(seed).ravel()
    largest = float(n.max())
    errors = []
    for s in np.unique(seed):
        mask = seed == s
        known = mask & (n < largest)
        target = mask & (n == largest)
        if np.unique(n[known]).size < 3 or not target.any():
            continue
        x = LINEAR_LAWS[law](n[known])
        a, b = _ols(x, y[known])
        errors.append(float(y[target].mean() - (a + b * LINEAR_LAWS[law](largest))))
    estimate = seed_interval(errors, level)
    return {"n": largest, "error": estimate.mean, "error_lo": estimate.lo,
            "error_hi": estimate.hi}


def _one_variant(points: pd.DataFrame) -> str:
    if "variant" not in points.columns:
        return ""
    variants = pd.unique(points["variant"])
    if len(variants) > 1:
        raise ValueError(f"expected the points of one variant, got {list(variants)}")
    return str(variants[0]) if len(variants) else ""


def _series(points: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, y, seed) of the non-missing points, in a fixed order."""
    if metric not in points.columns:
        raise ValueError(f"metric {metric!r} is not a column of the points")
    part = points.loc[points[metric].notna(), ["n", "seed", metric]]
    part = part.sort_values(["n", "seed"], kind="stable")
    return (part["n"].to_numpy(dtype=float), part[metric].to_numpy(dtype=float),
            part["seed"].to_numpy())


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


def fit_metric(points_of_one_variant: pd.DataFrame, metric: str, level: float = 0.95) -> dict:
    """One row of the fit table for one variant and metric (see FIT_COLUMNS); its intervals
    are over seeds (`seed_log_linear`).

    Raises ValueError when the non-missing points cannot be fitted (see `skip_reason`).
    """
    variant = _one_variant(points_of_one_variant)
    n, y, seed = _series(points_of_one_variant, metric)
    reason = skip_reason(n, y)
    if reason:
        raise ValueError(f"{variant}/{metric}: {reason}")
    fit = seed_log_linear(n, y, seed, level=level)
    laws: dict[str, LawFit] = {"log_linear": fit_log_linear(n, y)}
    for law, fitter in (("linear", fit_linear), ("power", fit_power),
                        ("saturating", fit_saturating)):
        law_fit = fitter(n, y)
        if law_fit is not None:
            laws[law] = law_fit
    best_law, note = _best_law(laws)
    floor = noise_floor(points_of_one_variant, metric)
    # R² of the seed means: how straight the curve is, without the seed noise that caps the
    # R² of the individual points (the form scaling-law papers report).
    means = pd.Series(y).groupby(n).mean()
    r2_means = fit_log_linear(means.index.to_numpy(float), means.to_numpy(float)).r2 \
        if means.size >= 3 else float("nan")
    interval = not (pd.isna(fit["b_lo"]) or pd.isna(fit["b_hi"]))
    row = {"variant": variant, "metric": metric, "n_points": int(n.size),
           "n_sizes": int(np.unique(n).size), "n_min": int(n.min()), "n_max": int(n.max()),
           "span": float(n.max() / n.min()), "level": level, "seeds": fit["seeds"],
           "df": fit["df"], "rmse": laws["log_linear"].rmse, "r2": fit["r2"],
           "r2_means": r2_means,
           "noise_floor_mean": floor["mean"], "noise_floor_at_max_n": floor["at_max_n"],
           "best_law": best_law, "alternative_note": note,
           "slope_excludes_zero": bool(fit["b_lo"] > 0 or fit["b_hi"] < 0) if interval
           else pd.NA,
           "note": "" if interval else "fewer than 2 seeds: no interval"}
    for name in ("a", "b", "gain_per_doubling"):
        for suffix in ("", "_lo", "_hi", "_se"):
            row[name + suffix] = fit[name + suffix]
    for law in LAWS:
        row[f"aic_{law}"] = laws[law].aic if law in laws else float("nan")
    for law in LINEAR_LAWS:
        row[f"lof_p_{law}"] = lack_of_fit(n, y, seed, law)[1]
        check = extrapolation(n, y, seed, law, level)
        row["extrapolated_n"] = check["n"]
        row[f"extrapolation_{law}"] = check["error"]
        row[f"extrapolation_{law}_lo"] = check["error_lo"]
        row[f"extrapolation_{law}_hi"] = check["error_hi"]
    return {column: row[column] for column in FIT_COLUMNS}


def fit_sweep(points: pd.DataFrame, metrics: list[str], level: float = 0.95) -> pd.DataFrame:
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
                n, y, _ = _series(part, metric)
                reason = skip_reason(n, y)
            if reason is None:
                rows.append(fit_metric(part, metric, level=level))
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


def bands_for(points: pd.DataFrame, metric: str, level: float = 0.95) -> dict[str, dict]:
    """variant -> seed_log_linear result for `metric`, as `plot_metric` takes it (the same
    intervals as `fit_sweep`'s)."""
    bands = {}
    for variant in pd.unique(points["variant"]):
        part = points[points["variant"] == variant]
        if metric not in part.columns:
            continue
        n, y, seed = _series(part, metric)
        if skip_reason(n, y) is None:
            bands[str(variant)] = seed_log_linear(n, y, seed, level=level)
    return bands


def _cells(points: pd.DataFrame, variant: str, metric: str) -> dict[tuple[int, int], float]:
    """(N, seed) -> the variant's value there (the mean, should a cell hold several)."""
    part = points[(points["variant"] == variant) & points[metric].notna()]
    return {(int(n), int(seed)): float(v) for (n, seed), v in
            part.groupby(["n", "seed"])[metric].mean().items()}


def bend(ns: list[int], values: np.ndarray) -> float:
    """The quadratic coefficient c of y = a + b·x + c·x², x = ln N centred, through one
    seed's values at `ns`: 0 on a log-linear curve, > 0 on one that bends upward towards
    linear in N (y = a + k·N is convex in ln N), < 0 on one that saturates."""
    x = np.log(np.asarray(ns, dtype=float))
    xc = x - x.mean()
    design = np.column_stack([np.ones_like(xc), xc, xc ** 2])
    return float((np.linalg.pinv(design) @ np.asarray(values, dtype=float))[2])


# A comparison's measures -> the stem of their `_lo`, `_hi` and `_se` keys.
COMPARISON_KEYS = {"mean_diff": "diff", "slope_diff": "slope_diff",
                   "curvature_diff": "curvature_diff"}


def compare_variants(points: pd.DataFrame, variant_a: str, variant_b: str, metric: str,
                     level: float = 0.95) -> dict:
    """variant_a − variant_b on `metric`, paired by seed and N.

    The design pairs the variants: at the same seed they see the same subsets and the same
    initialisation. So every measure is made once per seed, over the N both variants have
    (`common_n`), and its interval is a t-interval over the seeds both have at all of them
    (`seeds`, `df` = seeds − 1): `mean_diff` (the mean over N of a − b), `slope_diff` (the
    difference of the two log-linear slopes) and, with 3 or more common N, `curvature_diff`
    (the difference of their bends in ln N, see `bend`: the shape, apart from the level).
    Each has `_lo`, `_hi` and `_se`. `per_n` holds the difference of the paired seeds' means
    at each N. `all_equal` is True when every value of both variants there is the same.
    """
    nan = float("nan")
    out: dict = {"variant_a": variant_a, "variant_b": variant_b, "metric": metric,
                 "common_n": [], "seeds": 0, "df": 0, "per_n": {}, "level": level,
                 "all_equal": False, "note": ""}
    for name, bounds in COMPARISON_KEYS.items():
        out |= {k: nan for k in (name, *(bounds + s for s in ("_lo", "_hi", "_se")))}
    if metric not in points.columns:
        out["note"] = f"metric {metric!r} not in the points"
        return out
    cells_a, cells_b = _cells(points, variant_a, metric), _cells(points, variant_b, metric)
    common = sorted({n for n, _ in cells_a} & {n for n, _ in cells_b})
    if not common:
        out["note"] = f"no N with {metric} in both {variant_a} and {variant_b}"
        return out
    every_seed = sorted({s for _, s in cells_a} | {s for _, s in cells_b})
    paired = [s for s in every_seed
              if all((n, s) in cells_a and (n, s) in cells_b for n in common)]
    notes = []
    unpaired = sorted(set(every_seed) - set(paired))
    if unpaired:
        notes.append(f"seeds {unpaired} left out: not in both variants at every common N")
    out.update(common_n=common)
    if not paired:
        out["note"] = "; ".join(notes + ["no seed in both variants at every common N"])
        return out
    a = np.array([[cells_a[(n, s)] for n in common] for s in paired])
    b = np.array([[cells_b[(n, s)] for n in common] for s in paired])
    out["per_n"] = {n: float(d) for n, d in zip(common, (a - b).mean(axis=0), strict=True)}
    measures = {"mean_diff": (a - b).mean(axis=1)}
    if len(common) >= 2:
        x = np.log(np.asarray(common, dtype=float))
        xc = x - x.mean()
        measures["slope_diff"] = (a - b) @ xc / np.sum(xc ** 2)
    else:
        notes.append("one common N: no slope difference")
    if len(common) >= 3:
        measures["curvature_diff"] = np.array([bend(common, ra) - bend(common, rb)
                                               for ra, rb in zip(a, b, strict=True)])
    for name, per_seed in measures.items():
        estimate = seed_interval(per_seed, level)
        bounds = COMPARISON_KEYS[name]
        out |= {name: estimate.mean, f"{bounds}_lo": estimate.lo, f"{bounds}_hi": estimate.hi,
                f"{bounds}_se": estimate.se}
        out.update(seeds=estimate.seeds, df=estimate.df)
    if len(paired) < 2:
        notes.append(f"one paired seed ({paired[0]}): no interval")
    values = np.concatenate([a.ravel(), b.ravel()])
    if np.ptp(values) == 0:
        # Both variants score the same at every point (a floor, such as 0.0 everywhere): the
        # difference is exactly 0 with an interval of [0, 0], which measures nothing.
        out["all_equal"] = True
        notes.append(f"all values equal in both variants ({float(values[0]):.3g}): "
                     "nothing to compare")
    out["note"] = "; ".join(notes)
    return out
