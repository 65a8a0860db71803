"""Every verdict rule checked on planted truths: how often it says "reproduced" when the
effect is not there, how often it finds one that is, and whether it picks the planted shape.

`simulate` draws sweeps (sizes × seeds, one or two variants) from a known curve with the
noise of a real sweep (`NoiseModel.measure`): each seed's own level and own slope, shared by
all its N because its subsets are nested, and each point's own noise. The real analysis runs
on each draw, the same functions as the report's (`fit_sweep`, `compare_variants`, the
report's claim rules), and `calibrate` counts the verdicts:

| rule | planted | wanted |
|---|---|---|
| "b > 0" (slope) | no slope | "reproduced" at most `alpha` of the time |
| "b > 0" | a gain of the margin, and of 3 margins | its power |
| "does not help" | no slope | its power to show it |
| "does not help" | a gain of exactly the margin | "reproduced" at most `alpha` of the time |
| "a beats b" | no difference | "reproduced" at most `alpha` of the time |
| "a beats b" | the margin, and 3 margins | its power |
| shape | log, linear in N, saturating | the law chosen |

No Kedro here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline.experiments.scaling.fit import compare_variants, fit_sweep
from sail_pipeline.experiments.scaling.reproduction import judge_claim
from sail_pipeline.experiments.stats import per_seed_slopes
from sail_pipeline.schema import StatisticsParams

METRIC = "score"
# A planted shape -> the law of `scaling.fit` that has it.
PLANTED_LAW = {"log": "log_linear", "linear": "linear", "saturating": "saturating"}
VERDICT_COLUMNS = ("reproduced", "not reproduced", "inconclusive")


@dataclass(frozen=True)
class NoiseModel:
    """A sweep's noise: `seed_sd` (a seed's own level at every N), `slope_sd` (its own slope
    per ln N, from its nested subsets) and `point_sd` (each point's own)."""

    seed_sd: float
    slope_sd: float
    point_sd: float

    @classmethod
    def measure(cls, points: pd.DataFrame, metric: str) -> NoiseModel:
        """The components of one variant's points, by moments: each seed's own line, the
        residual spread about it, and the spread of the lines' levels and slopes less what
        the residuals alone would give them (0 when the residuals explain them)."""
        part = points[points[metric].notna()]
        n = part["n"].to_numpy(float)
        y = part[metric].to_numpy(float)
        seed = part["seed"].to_numpy()
        slopes = per_seed_slopes(n, y, seed)
        residuals, levels, sxx = [], [], []
        for s, b in slopes.items():
            mask = seed == s
            x = np.log(n[mask])
            a = y[mask].mean() - b * x.mean()
            residuals.append(y[mask] - (a + b * x))
            levels.append(y[mask].mean())
            sxx.append(float(np.sum((x - x.mean()) ** 2)))
        if len(slopes) < 2:
            raise ValueError(f"{metric}: two seeds with two sizes or more are needed to "
                             "measure the noise")
        dof = sum(r.size - 2 for r in residuals)
        point_var = float(sum(np.sum(r ** 2) for r in residuals) / dof) if dof > 0 else 0.0
        per_seed_points = np.mean([r.size for r in residuals])
        seed_var = float(np.var(levels, ddof=1)) - point_var / per_seed_points
        slope_var = float(np.var(list(slopes.values()), ddof=1)) - point_var / np.mean(sxx)
        return cls(math.sqrt(max(seed_var, 0.0)), math.sqrt(max(slope_var, 0.0)),
                   math.sqrt(point_var))


# The curves a truth can have: a gain `gain` per doubling of N over the grid, in its shape.
def _shape(shape: str, gain: float, sizes: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    lo, hi = math.log(min(sizes)), math.log(max(sizes))
    doublings = (hi - lo) / math.log(2)
    total = gain * doublings  # what the curve rises over the grid, whatever its shape
    if shape == "log":
        return lambda n: total * (np.log(n) - lo) / (hi - lo)
    if shape == "linear":
        return lambda n: total * (n - min(sizes)) / (max(sizes) - min(sizes))
    if shape == "saturating":
        # Most of the rise in the first doubling or two: y = c − A·N^(−1).
        scale = float(min(sizes))
        return lambda n: total * (1 - scale / n) / (1 - scale / max(sizes))
    raise ValueError(f"unknown shape {shape!r}")


def simulate(sizes: list[int], seeds: int, noise: NoiseModel, curves: dict[str, Callable],
             rng: np.random.Generator, level: float = 0.3) -> pd.DataFrame:
    """One sweep: every variant of `curves` at every size and seed. The variants of one seed
    share nothing but their sizes (no pairing gain is assumed, which is conservative)."""
    rows = []
    x = np.log(np.asarray(sizes, dtype=float))
    centred = x - x.mean()
    for variant, curve in curves.items():
        for seed in range(seeds):
            own = level + rng.normal(0, noise.seed_sd) + rng.normal(0, noise.slope_sd) * centred
            values = own + curve(np.asarray(sizes, float)) + rng.normal(0, noise.point_sd,
                                                                        len(sizes))
            rows += [{"variant": variant, "n": n, "seed": seed, METRIC: float(v)}
                     for n, v in zip(sizes, values, strict=True)]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Scenario:
    rule: str
    planted: str
    wanted: str
    claim: dict
    curves: dict[str, tuple[str, float]]  # variant -> (shape, gain per doubling)
    shift: float = 0.0  # what variant `a` is planted above the others at every N


def scenarios(statistics: StatisticsParams) -> list[Scenario]:
    """The planted truths of the module's table, sized by the declared margins."""
    slope = statistics.margin("gain_per_doubling") or 0.01
    diff = statistics.margin("mean_diff") or 0.02
    rise = {"claim": "b > 0", "kind": "slope", "variant": "a", "metric": METRIC,
            "expected": "increase"}
    flat = {"claim": "does not help", "kind": "slope", "variant": "a", "metric": METRIC,
            "expected": "no_increase", "r2_goal": None}
    beats = {"claim": "a beats b", "kind": "difference", "variant_a": "a", "variant_b": "b",
             "metric": METRIC, "expected": "increase"}
    out = [Scenario("b > 0 (slope)", "no slope", "reproduced ≤ alpha", rise,
                    {"a": ("log", 0.0)})]
    out += [Scenario("b > 0 (slope)", f"gain {k * slope:g} per doubling", "power", rise,
                     {"a": ("log", k * slope)}) for k in (1, 3)]
    out += [Scenario("does not help (slope)", "no slope", "power", flat, {"a": ("log", 0.0)}),
            Scenario("does not help (slope)", f"gain {slope:g} (the margin)",
                     "reproduced ≤ alpha", flat, {"a": ("log", slope)}),
            Scenario("does not help (slope)", f"gain {3 * slope:g}", "not reproduced", flat,
                     {"a": ("log", 3 * slope)})]
    out += [Scenario("a beats b (difference)", "no difference", "reproduced ≤ alpha", beats,
                     {"a": ("log", slope), "b": ("log", slope)})]
    out += [Scenario("a beats b (difference)", f"a − b = {k * diff:g}", "power", beats,
                     {"a": ("log", slope), "b": ("log", slope)}, shift=k * diff)
            for k in (1, 3)]
    return out


def _curves(scenario: Scenario, sizes: list[int]) -> dict[str, Callable]:
    curves = {}
    for variant, (shape, gain) in scenario.curves.items():
        base = _shape(shape, gain, sizes)
        curves[variant] = (lambda n, f=base: f(n) + scenario.shift) if variant == "a" else base
    return curves


def _verdict(scenario: Scenario, points: pd.DataFrame, statistics: StatisticsParams) -> str:
    claim = scenario.claim
    if claim["kind"] == "slope":
        fits, comparisons = fit_sweep(points, [METRIC], level=statistics.level), []
    else:
        fits = pd.DataFrame()
        comparisons = [compare_variants(points, claim["variant_a"], claim["variant_b"],
                                        METRIC, level=statistics.level)]
    return judge_claim(claim, points, fits, comparisons, statistics).verdict


def calibrate(sizes: list[int], seeds: int, noise: NoiseModel, statistics: StatisticsParams,
              runs: int = 200, rng_seed: int = 0) -> pd.DataFrame:
    """The calibration table: per rule and planted truth, the share of `runs` simulated
    sweeps given each verdict; then the shape rows (`shape_recovery`)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for scenario in scenarios(statistics):
        curves = _curves(scenario, sizes)
        counts = dict.fromkeys(VERDICT_COLUMNS, 0)
        for _ in range(runs):
            counts[_verdict(scenario, simulate(sizes, seeds, noise, curves, rng),
                            statistics)] += 1
        rows.append({"rule": scenario.rule, "planted": scenario.planted,
                     "wanted": scenario.wanted, "runs": runs,
                     **{k: v / runs for k, v in counts.items()}})
    return pd.DataFrame(rows)


def shape_recovery(sizes: list[int], seeds: int, noise: NoiseModel, gain: float,
                   runs: int = 100, rng_seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per planted shape (rising by `gain` per doubling over the grid): the share of `runs`
    sweeps whose fit chose each law (`best_law`)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for shape in ("log", "linear", "saturating"):
        chosen: dict[str, int] = {}
        for _ in range(runs):
            points = simulate(sizes, seeds, noise, {"a": _shape(shape, gain, sizes)}, rng)
            law = fit_sweep(points, [METRIC], level=level).iloc[0]["best_law"]
            chosen[str(law)] = chosen.get(str(law), 0) + 1
        planted_law = PLANTED_LAW[shape]
        rows.append({"planted": shape, "runs": runs,
                     "recovered": chosen.get(planted_law, 0) / runs,
                     **{law: count / runs for law, count in sorted(chosen.items())}})
    return pd.DataFrame(rows).fillna(0.0)


def _pct(share: float) -> str:
    return f"{share:.0%}"


def section(points: pd.DataFrame, variant: str, metric: str, statistics: StatisticsParams,
            runs: int) -> str:
    """The report's calibration section: the rules on planted truths drawn with the design
    (sizes, seeds) and the noise of `variant`'s `metric` in `points`; "" when there are too
    few seeds or sizes to measure the noise."""
    part = points[(points["variant"] == variant) & points[metric].notna()] \
        if metric in points.columns else points.iloc[0:0]
    sizes = sorted(int(n) for n in part["n"].unique())
    seeds = int(part["seed"].nunique())
    if len(sizes) < 3 or seeds < 2 or runs < 1:
        return ""
    noise = NoiseModel.measure(part, metric)
    table = calibrate(sizes, seeds, noise, statistics, runs=runs)
    largest = 3 * (statistics.margin("gain_per_doubling") or 0.01)
    shapes = shape_recovery(sizes, seeds, noise, largest, runs=max(runs // 2, 1),
                            level=statistics.level)
    lines = ["", f"## Calibration of the verdict rules ({metric})", "",
             f"Each rule run on {runs} sweeps drawn from a planted truth, with this sweep's "
             f"design ({len(sizes)} sizes, {seeds} seeds) and the noise measured on "
             f"{variant}'s {metric}: a seed's own level sd {noise.seed_sd:.3g}, its own "
             f"slope sd {noise.slope_sd:.3g} per ln N, each point's sd {noise.point_sd:.3g}. "
             "The same code judges the claims above (`experiments.calibration`). Under "
             "\"wanted\": what the share of the first column must be.", "",
             "| rule | planted | wanted | reproduced | not reproduced | inconclusive |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.rule} | {r.planted} | {r.wanted} | {_pct(r.reproduced)} | "
              f"{_pct(r['not reproduced'])} | {_pct(r.inconclusive)} |"
              for _, r in table.iterrows()]
    laws = [c for c in shapes.columns if c not in ("planted", "runs", "recovered")]
    lines += ["", f"The law the fit chooses, on curves rising {largest:g} per doubling over "
              f"the grid in each shape ({max(runs // 2, 1)} sweeps each):", "",
              "| planted | recovered | " + " | ".join(laws) + " |",
              "|---|---|" + "---|" * len(laws)]
    lines += [f"| {r.planted} | {_pct(r.recovered)} | "
              + " | ".join(_pct(r[law]) for law in laws) + " |" for _, r in shapes.iterrows()]
    return "\n".join(lines) + "\n"
