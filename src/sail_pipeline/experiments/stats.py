"""Statistics with the seed as the unit: intervals, paired comparisons, verdicts that can fail.

Every experiment here (a scaling sweep, a selection experiment) repeats a design over seeds,
and a seed's points are not independent of each other: its subsets are nested across N, its
row order and initialisation are shared by every variant. So each estimate is made once per
seed (a slope, a difference of two variants at the same seed), and the interval is a
t-interval over those per-seed values, with `seeds - 1` degrees of freedom. With 3 seeds
that is t(0.975, 2) = 4.30 standard errors either side: wide, and said so in every report.

A verdict (`judge`) is one of "reproduced", "not reproduced" or "inconclusive", and each of
them is reachable:
- a directional claim ("b > 0", "a beats b") is reproduced when the interval lies on its
  side of 0, not reproduced when it lies on the other side, or inside the claim's
  equivalence margin (the effect is shown to be too small to matter);
- a "does not help" claim is reproduced only when the effect is shown to be below its margin
  (a one-sided test at `alpha`, the non-superiority half of TOST), not reproduced when it
  is shown to be above 0, and inconclusive otherwise; without a margin it can only be
  refuted or inconclusive: absence of evidence is not evidence of absence;
- a "no difference" claim is TOST: both one-sided tests against ±margin.

Each verdict carries its minimum detectable effect at the seeds used (`mde`), and the seeds
needed to detect an effect of the margin's size (`seeds_needed`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
# A claim's expected effect: its sign, or "no effect" in one direction or both.
DIRECTIONS = {"increase": 1, "decrease": -1, "no_increase": 0, "no_difference": 0}


@dataclass(frozen=True)
class SeedEstimate:
    """The mean of per-seed values with its t-interval over seeds."""

    mean: float
    lo: float
    hi: float
    se: float
    df: int
    seeds: int
    level: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def seed_interval(per_seed: np.ndarray | list[float], level: float = 0.95) -> SeedEstimate:
    """Mean and two-sided t-interval of one value per seed (df = seeds - 1). One seed gives
    the value with an unbounded interval (NaN bounds): nothing is known of the spread."""
    values = np.asarray(per_seed, dtype=float)
    values = values[np.isfinite(values)]
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if values.size == 0:
        return SeedEstimate(math.nan, math.nan, math.nan, math.nan, 0, 0, level)
    mean = float(values.mean())
    if values.size < 2:
        return SeedEstimate(mean, math.nan, math.nan, math.nan, 0, 1, level)
    df = values.size - 1
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * se
    return SeedEstimate(mean, mean - half, mean + half, se, df, int(values.size), level)


def one_sided_bound(estimate: SeedEstimate, alpha: float, upper: bool) -> float:
    """The one-sided (1 - alpha) confidence bound of the estimate's mean."""
    if estimate.df < 1 or not math.isfinite(estimate.se):
        return math.nan
    t = float(scipy_stats.t.ppf(1 - alpha, estimate.df))
    return estimate.mean + t * estimate.se if upper else estimate.mean - t * estimate.se


def mde(se: float, df: int, alpha: float = 0.05, power: float = 0.8,
        two_sided: bool = True) -> float:
    """The smallest true effect the test detects with probability `power` at this standard
    error: (t_{1-alpha/2} + t_{power}) · se, with df degrees of freedom."""
    if df < 1 or not math.isfinite(se):
        return math.nan
    t_alpha = scipy_stats.t.ppf(1 - (alpha / 2 if two_sided else alpha), df)
    return float((t_alpha + scipy_stats.t.ppf(power, df)) * se)


def seeds_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8,
                 two_sided: bool = True, most: int = 10_000) -> int | None:
    """The fewest seeds whose t-test detects `effect` with `power`, the per-seed values
    having standard deviation `sd` (None when no sd or effect is known, or over `most`)."""
    if not (math.isfinite(sd) and math.isfinite(effect)) or effect == 0 or sd <= 0:
        return None
    for seeds in range(2, most + 1):
        if mde(sd / math.sqrt(seeds), seeds - 1, alpha, power, two_sided) <= abs(effect):
            return seeds
    return None


@dataclass(frozen=True)
class Verdict:
    verdict: str
    why: str
    mde: float
    seeds_for_margin: int | None


def judge(estimate: SeedEstimate, expected: str, margin: float | None = None,
          alpha: float = 0.05, power: float = 0.8) -> Verdict:
    """The verdict of a claim on the per-seed `estimate` of its effect (see the module doc).

    `expected`: "increase", "decrease" (the effect's sign), "no_increase" ("does not help")
    or "no_difference". `margin`: the equivalence margin (> 0), the largest effect that
    counts as none; the two-sided tests use the estimate's own level.
    """
    if expected not in DIRECTIONS:
        raise ValueError(f"expected must be one of {sorted(DIRECTIONS)}, got {expected!r}")
    if margin is not None and not margin > 0:
        raise ValueError(f"an equivalence margin must be > 0, got {margin!r}")
    two_sided_alpha = 1 - estimate.level
    detectable = mde(estimate.se, estimate.df, two_sided_alpha, power)
    per_seed_sd = estimate.se * math.sqrt(estimate.seeds) if estimate.seeds else math.nan
    needed = seeds_needed(per_seed_sd, margin, two_sided_alpha, power) if margin else None
    if estimate.df < 1 or not (math.isfinite(estimate.lo) and math.isfinite(estimate.hi)):
        return Verdict("inconclusive", f"{estimate.seeds} seed(s): no interval", detectable,
                       needed)
    lo, hi = estimate.lo, estimate.hi
    ci = f"{estimate.level:.0%} CI [{lo:+.3g}, {hi:+.3g}] over {estimate.seeds} seeds " \
         f"(df {estimate.df})"
    upper = one_sided_bound(estimate, alpha, upper=True)
    lower = one_sided_bound(estimate, alpha, upper=False)
    if expected in ("increase", "decrease"):
        sign = DIRECTIONS[expected]
        if (sign > 0 and lo > 0) or (sign < 0 and hi < 0):
            return Verdict("reproduced", f"{ci} on the expected side of 0", detectable, needed)
        if (sign > 0 and hi < 0) or (sign < 0 and lo > 0):
            return Verdict("not reproduced", f"{ci} on the other side of 0", detectable, needed)
        if margin is not None and -margin < lower and upper < margin:
            return Verdict("not reproduced", f"{ci}; equivalent to 0 within ±{margin:g} "
                           f"(TOST, alpha {alpha:g})", detectable, needed)
        return Verdict("inconclusive", f"{ci} includes 0", detectable, needed)
    if expected == "no_increase":
        if lo > 0:
            return Verdict("not reproduced", f"{ci} above 0: it helps", detectable, needed)
        if margin is None:
            return Verdict("inconclusive", f"{ci}; no equivalence margin declared, so "
                           "'does not help' cannot be shown", detectable, needed)
        if upper < margin:
            return Verdict("reproduced", f"{ci}; one-sided {1 - alpha:.0%} upper bound "
                           f"{upper:+.3g} below the margin {margin:g}", detectable, needed)
        return Verdict("inconclusive", f"{ci}; upper bound {upper:+.3g} not below the margin "
                       f"{margin:g}", detectable, needed)
    # no_difference
    if lo > 0 or hi < 0:
        return Verdict("not reproduced", f"{ci} excludes 0", detectable, needed)
    if margin is None:
        return Verdict("inconclusive", f"{ci}; no equivalence margin declared, so 'no "
                       "difference' cannot be shown", detectable, needed)
    if -margin < lower and upper < margin:
        return Verdict("reproduced", f"{ci}; within ±{margin:g} (TOST, alpha {alpha:g})",
                       detectable, needed)
    return Verdict("inconclusive", f"{ci}; not shown within ±{margin:g}", detectable, needed)


def per_seed_slopes(n: np.ndarray, y: np.ndarray, seed: np.ndarray,
                    transform: str = "log") -> dict[int, float]:
    """Each seed's least-squares slope of y on ln N (`log`) or N (`linear`), over its own
    points: the per-seed values whose t-interval is the slope's (seeds with < 2 sizes are
    left out)."""
    n, y, seed = (np.asarray(v, dtype=float) for v in (n, y, seed))
    x = np.log(n) if transform == "log" else n
    out = {}
    for s in np.unique(seed):
        mask = seed == s
        xs, ys = x[mask], y[mask]
        if np.unique(xs).size < 2:
            continue
        xc = xs - xs.mean()
        out[int(s)] = float(np.sum(xc * (ys - ys.mean())) / np.sum(xc ** 2))
    return out


def paired_by_seed(a: dict[int, float], b: dict[int, float]) -> np.ndarray:
    """a − b at each seed both have, in seed order (the design pairs them)."""
    common = sorted(set(a) & set(b))
    return np.array([a[s] - b[s] for s in common], dtype=float)
