"""The markdown reproduction report of a scaling sweep: claims, fits, comparisons, figures.

Every number in the report is read from its inputs (the points, the `fit_sweep` table, the
`compare_variants` results, the wall times); the only constants are the decision rules
(the R² goal of a log-linear claim, and which side of 0 a claim expects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline.experiments import stats
from sail_pipeline.experiments.scaling.plan import size_label
from sail_pipeline.schema import StatisticsParams

# The paper's bar for calling a curve log-linear; a claim may set its own `r2_goal`.
R2_GOAL = 0.9

VERDICTS = stats.VERDICTS
NOT_MEASURED = "not measured"


def estimate_of(value: float, lo: float, hi: float, se: float, df: int, seeds: int,
                level: float) -> stats.SeedEstimate:
    """A measure read back from a fit row or a comparison as the estimate it was made as."""
    def num(x: object) -> float:
        return math.nan if x is None or pd.isna(x) else float(x)

    return stats.SeedEstimate(num(value), num(lo), num(hi), num(se),
                              0 if pd.isna(df) else int(df),
                              0 if pd.isna(seeds) else int(seeds), level)


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    x = float(x)
    text = f"{x:.1f}" if abs(x) >= 100 else f"{x:.3g}"
    return f"+{text}" if signed and x > 0 else text


def _ci(value: float, lo: float, hi: float, signed: bool = False) -> str:
    return f"{_num(value, signed)} [{_num(lo, signed)}, {_num(hi, signed)}]"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return [_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows)]


def _shape_checks(row: pd.Series) -> str:
    """Each straight law's lack of fit and its error when it predicts the largest N from the
    others (both with the seed as the unit; `scaling.fit.lack_of_fit`, `extrapolation`)."""
    parts = []
    for law, name in (("log_linear", "log"), ("linear", "linear in N")):
        lof = row.get(f"lof_p_{law}", math.nan)
        error = [row.get(f"extrapolation_{law}{k}", math.nan) for k in ("", "_lo", "_hi")]
        if pd.isna(lof) and pd.isna(error[0]):
            continue
        parts.append(f"{name}: p {_num(lof)}; {_ci(*error, signed=True)}")
    return "; ".join(parts) or "n/a"


def _fit_row(fits: pd.DataFrame, variant: str, metric: str) -> pd.Series | None:
    rows = fits[(fits["variant"] == variant) & (fits["metric"] == metric)]
    return None if rows.empty else rows.iloc[0]


def _r2_cap(points: pd.DataFrame, variant: str, metric: str) -> float:
    """The best R² any curve through N can reach: seed noise within an N is unexplainable."""
    part = points[(points["variant"] == variant) & points[metric].notna()]
    y = part[metric].to_numpy(dtype=float)
    total = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    if total <= 0:
        return float("nan")
    within = float(part.groupby("n")[metric].apply(lambda v: ((v - v.mean()) ** 2).sum()).sum())
    return 1.0 - within / total


@dataclass(frozen=True)
class Judged:
    """One claim's line of the report."""

    measured: str
    verdict: str
    why: str
    mde: float = math.nan
    seeds_for_margin: int | None = None


def _expected(claim: dict) -> str:
    expected = claim.get("expected")
    if expected not in stats.DIRECTIONS:
        raise ValueError(f"claim {claim.get('claim')!r}: expected must be one of "
                         f"{sorted(stats.DIRECTIONS)}, got {expected!r}")
    return expected


def _slope_claim(claim: dict, points: pd.DataFrame, fits: pd.DataFrame,
                 statistics: StatisticsParams) -> Judged:
    variant, metric, expected = claim["variant"], claim["metric"], _expected(claim)
    row = _fit_row(fits, variant, metric)
    if row is None:
        return Judged(NOT_MEASURED, "inconclusive", f"no fit of {variant} on {metric}")
    if pd.isna(row["b"]):
        return Judged(NOT_MEASURED, "inconclusive", f"{variant} on {metric}: {row['note']}")
    gain = _ci(row["gain_per_doubling"], row["gain_per_doubling_lo"],
               row["gain_per_doubling_hi"], signed=True)
    measured = (f"{gain} per doubling of N (df {_df(row['df'])}); R² {_num(row['r2'])} (seed "
                f"means {_num(row.get('r2_means', math.nan))})")
    # Judged on the gain per doubling, the unit its margin is declared in.
    estimate = estimate_of(row["gain_per_doubling"], row["gain_per_doubling_lo"],
                           row["gain_per_doubling_hi"], row["gain_per_doubling_se"],
                           row["df"], row["seeds"], float(row["level"]))
    judged = stats.judge(estimate, expected, statistics.margin("gain_per_doubling"),
                         statistics.alpha, statistics.power)
    result, why = judged.verdict, [f"slope: {judged.why}"]
    goal = claim.get("r2_goal", R2_GOAL)
    if expected in ("increase", "decrease") and goal is not None:
        # A log-linear claim is about the form as well as the sign: a rising curve that is
        # not log-linear does not reproduce it, though it does not refute the rise either.
        form_ok = True
        # The goal is judged on the seed means' R² (each point's seed noise is measured
        # apart, as the noise floor), falling back to the points' R².
        r2 = row.get("r2_means", math.nan)
        r2 = row["r2"] if pd.isna(r2) else r2
        if pd.isna(r2) or r2 < goal:
            form_ok = False
            text = f"R² of the seed means {_num(r2)} below the {_num(goal)} goal"
            cap = _r2_cap(points, variant, metric) if metric in points.columns else math.nan
            if not pd.isna(cap) and cap < goal:
                text += f" (seed noise caps the points' R² at {_num(cap)})"
            why.append(text)
        else:
            why.append(f"R² of the seed means {_num(r2)} ≥ {_num(goal)}")
        if row.get("alternative_note"):
            form_ok = False
            why.append(str(row["alternative_note"]))
        lof = row.get("lof_p_log_linear", math.nan)
        if not pd.isna(lof) and lof < statistics.alpha:
            form_ok = False
            why.append(f"the log law misses the seed means (lack of fit p {lof:.2g})")
        lo, hi = (row.get(f"extrapolation_log_linear_{k}", math.nan) for k in ("lo", "hi"))
        if not (pd.isna(lo) or pd.isna(hi)) and (lo > 0 or hi < 0):
            form_ok = False
            why.append(f"fitted below N={int(row['extrapolated_n'])}, it misses there by "
                       f"{_ci(row['extrapolation_log_linear'], lo, hi, signed=True)}")
        if result == "reproduced" and not form_ok:
            result = "inconclusive"
    return Judged(measured, result, "; ".join(why), judged.mde, judged.seeds_for_margin)


def _df(df: object) -> str:
    return "n/a" if df is None or pd.isna(df) else str(int(df))


def _comparison(comparisons: list[dict], a: str, b: str, metric: str) -> tuple[dict, int] | None:
    """The comparison of a with b on metric, and +1, or of b with a, and −1 (sign flips)."""
    for comp in comparisons:
        if comp["metric"] != metric:
            continue
        if (comp["variant_a"], comp["variant_b"]) == (a, b):
            return comp, 1
        if (comp["variant_a"], comp["variant_b"]) == (b, a):
            return comp, -1
    return None


# A difference claim's measure -> (its name in the report, its value and CI keys).
MEASURES = {
    "mean_diff": ("mean difference", ("mean_diff", "diff_lo", "diff_hi", "diff_se")),
    "slope_diff": ("slope difference (per ln N)",
                   ("slope_diff", "slope_diff_lo", "slope_diff_hi", "slope_diff_se")),
    "curvature_diff": ("curvature difference (per (ln N)²)",
                       ("curvature_diff", "curvature_diff_lo", "curvature_diff_hi",
                        "curvature_diff_se")),
}


def _difference_claim(claim: dict, comparisons: list[dict],
                      statistics: StatisticsParams) -> Judged:
    a, b, metric = claim["variant_a"], claim["variant_b"], claim["metric"]
    expected = _expected(claim)
    # A claim may be about the difference of slopes, or of bends, rather than of levels.
    measure = claim.get("measure", "mean_diff")
    if measure not in MEASURES:
        raise ValueError(f"claim {claim.get('claim')!r}: measure must be one of "
                         f"{sorted(MEASURES)}, got {measure!r}")
    what, keys = MEASURES[measure]
    found = _comparison(comparisons, a, b, metric)
    if found is None:
        return Judged(NOT_MEASURED, "inconclusive", f"no comparison of {a} with {b} on {metric}")
    comp, sign = found
    if comp.get("all_equal"):
        return Judged(NOT_MEASURED, "inconclusive", f"{a} and {b} on {metric}: {comp['note']}")
    value, lo, hi = (sign * float(comp[k]) for k in keys[:3])
    if sign < 0:
        lo, hi = hi, lo
    common = [int(n) for n in comp.get("common_n", [])]
    measured = (f"{a} − {b}: {what} {_ci(value, lo, hi, signed=True)}, paired over "
                f"{comp.get('seeds', 0)} seeds (df {_df(comp.get('df'))}) at {len(common)} "
                "common N")
    estimate = estimate_of(value, lo, hi, comp.get(keys[3], math.nan), comp.get("df", 0),
                           comp.get("seeds", 0), float(comp.get("level", 0.95)))
    judged = stats.judge(estimate, expected, statistics.margin(measure), statistics.alpha,
                         statistics.power)
    why = [f"{what}: {judged.why}"]
    if comp.get("note"):
        why.append(str(comp["note"]))
    return Judged(measured, judged.verdict, "; ".join(why), judged.mde,
                  judged.seeds_for_margin)


def _statistics_line(statistics: StatisticsParams, pct: str) -> str:
    margins = ", ".join(f"{k} ±{v:g}" for k, v in sorted(statistics.margins.items()))
    return (f"Each claim is judged on a {pct} t-interval over seeds, the seed being the unit. "
            f"\"Does not help\" and \"no difference\" are shown only within an equivalence "
            f"margin (one-sided tests at alpha {statistics.alpha:g}; margins: {margins or 'none'}"
            f"); without one they are inconclusive. MDE: the smallest true effect detected with "
            f"{statistics.power:.0%} power at the seeds used.")


def judge_claim(claim: dict, points: pd.DataFrame, fits: pd.DataFrame,
                comparisons: list[dict], statistics: StatisticsParams) -> Judged:
    """One claim's measurement and verdict: a `slope` claim on its variant's fit, a
    `difference` claim on its comparison (the calibration runs this same function)."""
    kind = claim.get("kind")
    if kind == "slope":
        return _slope_claim(claim, points, fits, statistics)
    if kind == "difference":
        return _difference_claim(claim, comparisons, statistics)
    raise ValueError(f"claim {claim.get('claim')!r}: kind must be 'slope' or 'difference', "
                     f"got {kind!r}")


def _level(fits: pd.DataFrame, comparisons: list[dict]) -> float:
    levels = [float(v) for v in fits.get("level", pd.Series(dtype=float)).dropna()]
    levels += [float(c["level"]) for c in comparisons if "level" in c]
    return levels[0] if levels else 0.95


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _given(text: object) -> bool:
    return isinstance(text, str) and bool(text)


def _no_claims(untested: list[dict] | None, variants: list[str]) -> list[str]:
    """Why the Claims table is empty: which variants each claim needs that the sweep lacks."""
    ran = ", ".join(variants) or "none"
    if not untested:
        return [f"No claim was tested: none was given for this sweep's variants ({ran})."]
    lines = [f"No claim was tested: each claim needs variants this sweep did not run (it ran "
             f"{ran}). Add them to `scaling.variants` to test a claim:", ""]
    lines += [f"- {c['claim']}: needs {', '.join(c['missing'])}" for c in untested]
    return lines


def _why_unjudged(measured: list[str]) -> list[str]:
    """When no claim could be measured: say so once, under the table."""
    if not measured or any(m != NOT_MEASURED for m in measured):
        return []
    return ["", "No claim could be judged: no fit or comparison was possible for any of them "
            "(the why column says what each lacks; the Fits table says it per metric)."]


def reproduction_report(points: pd.DataFrame, fits: pd.DataFrame, comparisons: list[dict],
                        claims: list[dict], figures: dict[str, str], missing: list[str],
                        wall: dict | None = None,
                        title: str = "Scaling sweep: reproduction report",
                        untested: list[dict] | None = None,
                        statistics: StatisticsParams | None = None) -> str:
    """The markdown report of a sweep.

    `claims`: dicts with `claim` (text), `kind` ("slope" or "difference"), `metric`,
    `expected` (one of `stats.DIRECTIONS`: "increase", "decrease", "no_increase" for "does
    not help", "no_difference"), and `variant` (slope) or `variant_a`,
    `variant_b` (difference, a − b). Optional: `r2_goal` for a slope claim (default 0.9;
    None to judge the sign only) and, for a difference claim, `measure`: "mean_diff" (the
    default), "slope_diff" or "curvature_diff" (see `MEASURES`).
    `figures`: name -> path relative to the report. `missing`: names of unfinished points.
    `wall`: step name -> seconds. `untested`: the claims left out because the sweep lacks
    their variants, as dicts with `claim` (text) and `missing` (the variants it lacks); the
    report lists them, and says why when no claim was tested at all.
    """
    statistics = statistics or StatisticsParams()
    level = _level(fits, comparisons)
    pct = f"{level:.0%}"
    variants = [str(v) for v in pd.unique(points["variant"])] if len(points) else []
    sizes = sorted({int(n) for n in points["n"]}) if len(points) else []
    seeds = sorted({int(s) for s in points["seed"]}) if len(points) else []
    lines = [f"# {title}", "",
             f"- variants ({len(variants)}): {', '.join(variants) or 'none'}",
             f"- sizes N ({len(sizes)}): {', '.join(size_label(n) for n in sizes) or 'none'}",
             f"- seeds ({len(seeds)}): {', '.join(str(s) for s in seeds) or 'none'}",
             f"- points finished: {len(points)} of {len(points) + len(missing)}",
             f"- points missing: {len(missing)}"]
    lines += [f"  - {name}" for name in missing]
    if len(points):
        counts = points.groupby("variant", sort=False).agg(points=("n", "size"),
                                                           sizes=("n", "nunique"))
        lines += ["", *_table(["variant", "points", "sizes"],
                              [[v, int(r["points"]), int(r["sizes"])]
                               for v, r in counts.iterrows()])]

    lines += ["", "## Claims", ""]
    rows, measures = [], []
    for claim in claims:
        judged = judge_claim(claim, points, fits, comparisons, statistics)
        seeds = "n/a" if judged.seeds_for_margin is None else str(judged.seeds_for_margin)
        rows.append([claim["claim"], f"{claim['metric']}: {judged.measured}", judged.verdict,
                     _num(judged.mde), seeds, judged.why])
        measures.append(judged.measured)
    if rows:
        lines += [_statistics_line(statistics, pct), ""]
        lines += _table(["claim", f"our measurement (value with {pct} CI)", "verdict",
                         f"MDE ({statistics.power:.0%} power)", "seeds to detect the margin",
                         "why"], rows)
        lines += _why_unjudged(measures)
        if untested:
            lines += ["", "Not tested (the sweep lacks their variants):", ""]
            lines += [f"- {c['claim']}: needs {', '.join(c['missing'])}" for c in untested]
    else:
        lines += _no_claims(untested, variants)

    lines += ["", "## Fits", "",
              f"Log-linear y = a + b·ln N per variant and metric, fitted to each seed's points "
              f"(its subsets are nested across N); the values are the means over seeds, with "
              f"{pct} t-intervals over seeds (df = seeds − 1). Noise floor: seed-to-seed std, "
              "mean over N (at the largest N). The last column tests the shape of the two "
              "straight laws: the lack-of-fit p (each seed its own level, the seeds' "
              "disagreement as pure error; small: the law misses the seed means), and the law "
              "fitted by each seed without the largest N, predicting it (observed − "
              "predicted; an interval that excludes 0: the law does not hold beyond its "
              "sizes). A log-law claim is reproduced only if it passes both.", ""]
    rows = []
    for _, row in fits.iterrows():
        if pd.isna(row["b"]):
            rows.append([row["variant"], row["metric"], "n/a", "n/a", "n/a", "n/a", "n/a",
                         "n/a", f"no fit: {row['note']}" if _given(row["note"]) else "no fit",
                         "n/a"])
            continue
        law = row["alternative_note"] or row["best_law"]
        rows.append([row["variant"], row["metric"], _num(row["a"]),
                     _ci(row["b"], row["b_lo"], row["b_hi"], signed=True),
                     _ci(row["gain_per_doubling"], row["gain_per_doubling_lo"],
                         row["gain_per_doubling_hi"], signed=True),
                     _num(row["r2"]), _num(row.get("r2_means", math.nan)),
                     f"{_num(row['noise_floor_mean'])} ({_num(row['noise_floor_at_max_n'])})",
                     law, _shape_checks(row)])
    lines += _table(["variant", "metric", "a", "b [CI]", "gain per doubling [CI]", "R²",
                     "R² (seed means)", "noise floor", "best law",
                     "lack of fit p; error predicting the largest N [CI]"], rows)

    if comparisons:
        lines += ["", "## Comparisons", "",
                  f"a − b at equal N and the same seed (the same subsets): the mean over the "
                  f"common N of the differences, the difference of log-linear slopes, and of "
                  f"bends in ln N (the x² coefficient; > 0: a bends upward more than b); each "
                  f"measured per seed, with {pct} t-intervals over the paired seeds.", ""]
        rows = []
        for comp in comparisons:
            per_n = ", ".join(f"{size_label(int(n))}: {_num(d, signed=True)}"
                              for n, d in comp.get("per_n", {}).items())
            rows.append([f"{comp['variant_a']} − {comp['variant_b']}", comp["metric"],
                         len(comp.get("common_n", [])),
                         _ci(comp["mean_diff"], comp["diff_lo"], comp["diff_hi"], signed=True),
                         _ci(comp["slope_diff"], comp["slope_diff_lo"], comp["slope_diff_hi"],
                             signed=True),
                         _ci(comp.get("curvature_diff", math.nan),
                             comp.get("curvature_diff_lo", math.nan),
                             comp.get("curvature_diff_hi", math.nan), signed=True),
                         per_n or "n/a", comp.get("note", "")])
        lines += _table(["a − b", "metric", "common N", "mean diff [CI]", "slope diff [CI]",
                         "bend diff [CI]", "per N", "note"], rows)

    if figures:
        lines += ["", "## Figures"]
        for name, path in figures.items():
            lines += ["", f"### {name}", "", f"![{name}]({path})"]

    if wall:
        # The caller's rows as given: they may nest (a whole and its parts), so no total.
        lines += ["", "## Wall time", ""]
        rows = [[name, f"{seconds:.0f}", _hms(seconds)] for name, seconds in wall.items()]
        lines += _table(["step", "seconds", "h:mm:ss"], rows)
    return "\n".join(lines) + "\n"
