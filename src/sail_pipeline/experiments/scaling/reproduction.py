"""The markdown reproduction report of a scaling sweep: claims, fits, comparisons, figures.

Every number in the report is read from its inputs (the points, the `fit_sweep` table, the
`compare_variants` results, the wall times); the only constants are the decision rules
(the R² goal of a log-linear claim, and which side of 0 a claim expects).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sail_pipeline.experiments.scaling.plan import size_label

# The paper's bar for calling a curve log-linear; a claim may set its own `r2_goal`.
R2_GOAL = 0.9

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
NOT_MEASURED = "not measured"


def verdict(lo: float, hi: float, expected_sign: int) -> str:
    """Verdict of a claim from the confidence interval [lo, hi] of its measurement.

    expected_sign +1 (or −1): "reproduced" when the whole CI is above (below) 0, "not
    reproduced" when it is wholly on the other side, "inconclusive" when it straddles 0.
    expected_sign 0 is a "does not help" claim: it is refuted only by a CI wholly above 0,
    so it is "reproduced" when the CI includes 0 or lies below it.
    A missing bound (NaN) is always "inconclusive".
    """
    if expected_sign not in (-1, 0, 1):
        raise ValueError(f"expected_sign must be -1, 0 or +1, got {expected_sign!r}")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"CI bounds out of order: [{lo}, {hi}]")
    if expected_sign == 0:
        return "not reproduced" if lo > 0 else "reproduced"
    above, below = lo > 0, hi < 0
    if (above and expected_sign > 0) or (below and expected_sign < 0):
        return "reproduced"
    if above or below:
        return "not reproduced"
    return "inconclusive"


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


def _side(lo: float, hi: float) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return "no interval"
    if lo > 0:
        return "CI entirely above 0"
    if hi < 0:
        return "CI entirely below 0"
    return "CI includes 0"


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


def _slope_claim(claim: dict, points: pd.DataFrame, fits: pd.DataFrame) -> tuple[str, str, str]:
    variant, metric, expected = claim["variant"], claim["metric"], int(claim["expected"])
    row = _fit_row(fits, variant, metric)
    if row is None:
        return NOT_MEASURED, "inconclusive", f"no fit of {variant} on {metric}"
    if pd.isna(row["b"]):
        return NOT_MEASURED, "inconclusive", f"{variant} on {metric}: {row['note']}"
    gain = _ci(row["gain_per_doubling"], row["gain_per_doubling_lo"],
               row["gain_per_doubling_hi"], signed=True)
    measured = (f"b = {_ci(row['b'], row['b_lo'], row['b_hi'], signed=True)} per ln N; "
                f"{gain} per doubling; R² {_num(row['r2'])} (seed means "
                f"{_num(row.get('r2_means', math.nan))})")
    result = verdict(row["b_lo"], row["b_hi"], expected)
    why = [f"slope {_side(row['b_lo'], row['b_hi'])}"]
    goal = claim.get("r2_goal", R2_GOAL)
    if expected != 0 and goal is not None:
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
        if result == "reproduced" and not form_ok:
            result = "inconclusive"
    return measured, result, "; ".join(why)


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
    "mean_diff": ("mean difference", ("mean_diff", "diff_lo", "diff_hi")),
    "slope_diff": ("slope difference", ("slope_diff", "slope_diff_lo", "slope_diff_hi")),
    "curvature_diff": ("curvature difference (per (ln N)²)",
                       ("curvature_diff", "curvature_diff_lo", "curvature_diff_hi")),
}


def _difference_claim(claim: dict, comparisons: list[dict]) -> tuple[str, str, str]:
    a, b, metric = claim["variant_a"], claim["variant_b"], claim["metric"]
    expected = int(claim["expected"])
    # A claim may be about the difference of slopes, or of bends, rather than of levels.
    measure = claim.get("measure", "mean_diff")
    if measure not in MEASURES:
        raise ValueError(f"claim {claim.get('claim')!r}: measure must be one of "
                         f"{sorted(MEASURES)}, got {measure!r}")
    what, keys = MEASURES[measure]
    found = _comparison(comparisons, a, b, metric)
    if found is None:
        return NOT_MEASURED, "inconclusive", f"no comparison of {a} with {b} on {metric}"
    comp, sign = found
    if comp.get("all_equal"):
        return NOT_MEASURED, "inconclusive", f"{a} and {b} on {metric}: {comp['note']}"
    value, lo, hi = (sign * float(comp[k]) for k in keys)
    if sign < 0:
        lo, hi = hi, lo
    common = [int(n) for n in comp.get("common_n", [])]
    measured = (f"{a} − {b}: {what} {_ci(value, lo, hi, signed=True)} over "
                f"{len(common)} common N")
    why = [f"{what} {_side(lo, hi)}"]
    if comp.get("note"):
        why.append(str(comp["note"]))
    return measured, verdict(lo, hi, expected), "; ".join(why)


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
                        untested: list[dict] | None = None) -> str:
    """The markdown report of a sweep.

    `claims`: dicts with `claim` (text), `kind` ("slope" or "difference"), `metric`,
    `expected` (+1, −1, or 0 for "does not help"), and `variant` (slope) or `variant_a`,
    `variant_b` (difference, a − b). Optional: `r2_goal` for a slope claim (default 0.9;
    None to judge the sign only) and, for a difference claim, `measure`: "mean_diff" (the
    default), "slope_diff" or "curvature_diff" (see `MEASURES`).
    `figures`: name -> path relative to the report. `missing`: names of unfinished points.
    `wall`: step name -> seconds. `untested`: the claims left out because the sweep lacks
    their variants, as dicts with `claim` (text) and `missing` (the variants it lacks); the
    report lists them, and says why when no claim was tested at all.
    """
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
        kind = claim.get("kind")
        if kind == "slope":
            measured, result, why = _slope_claim(claim, points, fits)
        elif kind == "difference":
            measured, result, why = _difference_claim(claim, comparisons)
        else:
            raise ValueError(f"claim {claim.get('claim')!r}: kind must be 'slope' or "
                             f"'difference', got {kind!r}")
        rows.append([claim["claim"], f"{claim['metric']}: {measured}", result, why])
        measures.append(measured)
    if rows:
        lines += _table(["claim", f"our measurement (value with {pct} CI)", "verdict", "why"],
                        rows)
        lines += _why_unjudged(measures)
        if untested:
            lines += ["", "Not tested (the sweep lacks their variants):", ""]
            lines += [f"- {c['claim']}: needs {', '.join(c['missing'])}" for c in untested]
    else:
        lines += _no_claims(untested, variants)

    lines += ["", "## Fits", "",
              f"Log-linear y = a + b·ln N per variant and metric; {pct} bootstrap CIs over the "
              "(N, seed) points. Noise floor: seed-to-seed std, mean over N (at the largest N).",
              ""]
    rows = []
    for _, row in fits.iterrows():
        if pd.isna(row["b"]):
            rows.append([row["variant"], row["metric"], "n/a", "n/a", "n/a", "n/a", "n/a",
                         "n/a", f"no fit: {row['note']}" if _given(row["note"]) else "no fit"])
            continue
        law = row["alternative_note"] or row["best_law"]
        rows.append([row["variant"], row["metric"], _num(row["a"]),
                     _ci(row["b"], row["b_lo"], row["b_hi"], signed=True),
                     _ci(row["gain_per_doubling"], row["gain_per_doubling_lo"],
                         row["gain_per_doubling_hi"], signed=True),
                     _num(row["r2"]), _num(row.get("r2_means", math.nan)),
                     f"{_num(row['noise_floor_mean'])} ({_num(row['noise_floor_at_max_n'])})",
                     law])
    lines += _table(["variant", "metric", "a", "b [CI]", "gain per doubling [CI]", "R²",
                     "R² (seed means)", "noise floor", "best law"], rows)

    if comparisons:
        lines += ["", "## Comparisons", "",
                  f"a − b at equal N: the mean over the common N of the seed-mean differences, "
                  f"the difference of log-linear slopes, and of bends in ln N (the x² "
                  f"coefficient; > 0: a bends upward more than b); {pct} CIs from resampling "
                  "seeds within each (variant, N).", ""]
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
