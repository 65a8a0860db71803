"""The scaling report says why it cannot fit: all values equal, too few points, no claim.

Planted tables with a known answer; and the `small` environment's parameters validate (the
sweep itself is not run here: it takes about a quarter of an hour).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sail_pipeline.experiments.scaling.fit import (
    NOTHING_TO_FIT,
    TOO_FEW_POINTS,
    bands_for,
    compare_variants,
    fit_metric,
    fit_sweep,
    skip_reason,
)
from sail_pipeline.experiments.scaling.plots import plot_metric
from sail_pipeline.experiments.scaling.report import CLAIMS, HEADLINE, _claims
from sail_pipeline.experiments.scaling.reproduction import reproduction_report

SIZES = [100, 200, 400, 800]
SEEDS = [0, 1]


def table(variant: str, curve, noise: float = 0.0, sizes=SIZES, seeds=SEEDS,
          metric: str = "pretrain/caption", rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    return pd.DataFrame([{"variant": variant, "n": n, "seed": s,
                          metric: float(curve(n)) + (rng.normal(0, noise) if noise else 0.0)}
                         for n in sizes for s in seeds])


def sloped(n: float) -> float:
    return 0.1 + 0.03 * math.log(n)


def claims_rows(report: str) -> list[str]:
    section = report.split("## Claims", 1)[1].split("## Fits", 1)[0]
    return [line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| claim |")]


def fits_row(report: str, variant: str, metric: str) -> str:
    section = report.split("## Fits", 1)[1].split("\n## ", 1)[0]
    return next(line for line in section.splitlines()
                if line.startswith(f"| {variant} | {metric} |"))


def slope_claim(variant: str, metric: str = "pretrain/caption") -> dict:
    return {"claim": f"{variant} grows", "kind": "slope", "variant": variant,
            "metric": metric, "expected": "increase"}


# --- all values equal ------------------------------------------------------------------------

def test_all_values_equal_is_nothing_to_fit_not_a_zero_slope():
    points = table("reference", lambda n: 0.0)
    fits = fit_sweep(points, ["pretrain/caption"])
    row = fits.iloc[0]
    assert NOTHING_TO_FIT in row["note"] and "every one 0" in row["note"]
    assert TOO_FEW_POINTS not in row["note"]  # 4 sizes x 2 seeds is enough points
    assert math.isnan(row["b"]) and math.isnan(row["b_lo"]) and row["best_law"] is None
    assert pd.isna(row["slope_excludes_zero"])
    with pytest.raises(ValueError, match=NOTHING_TO_FIT):
        fit_metric(points, "pretrain/caption")
    assert bands_for(points, "pretrain/caption") == {}

    report = reproduction_report(points, fits, [], [slope_claim("reference")], {}, [])
    line = fits_row(report, "reference", "pretrain/caption")
    assert "all values equal: nothing to fit" in line
    assert "log_linear" not in line and "[0, 0]" not in line and "+0" not in line
    (claim,) = claims_rows(report)
    assert "not measured" in claim and "| inconclusive |" in claim
    assert NOTHING_TO_FIT in claim
    assert "No claim could be judged" in report


def test_a_constant_nonzero_score_is_nothing_to_fit_too():
    points = table("alt_text", lambda n: 0.25)
    assert NOTHING_TO_FIT in skip_reason(points["n"].to_numpy(), points["pretrain/caption"])
    # One differing value is enough to fit.
    points.loc[3, "pretrain/caption"] = 0.26
    assert skip_reason(points["n"].to_numpy(), points["pretrain/caption"]) is None


def test_the_plot_legend_says_nothing_to_fit():
    points = pd.concat([table("reference", sloped, noise=0.005, rng_seed=1),
                        table("alt_text", lambda n: 0.0)], ignore_index=True)
    fits = fit_sweep(points, ["pretrain/caption"])
    figure = plot_metric(points, fits, "pretrain/caption",
                         bands_for(points, "pretrain/caption"))
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert labels[0].startswith("reference: b=")
    assert labels[1].startswith("alt_text: all values equal: nothing to fit")


def test_two_variants_equal_everywhere_have_nothing_to_compare():
    points = pd.concat([table("recaption", lambda n: 0.0), table("alt_text", lambda n: 0.0)],
                       ignore_index=True)
    comparison = compare_variants(points, "recaption", "alt_text", "pretrain/caption")
    assert comparison["all_equal"] is True
    assert "nothing to compare" in comparison["note"]
    claim = {"claim": "recaptions beat alt-text", "kind": "difference",
             "variant_a": "recaption", "variant_b": "alt_text", "metric": "pretrain/caption",
             "expected": "increase"}
    fits = fit_sweep(points, ["pretrain/caption"])
    report = reproduction_report(points, fits, [comparison], [claim], {}, [])
    (line,) = claims_rows(report)
    assert "not measured" in line and "nothing to compare" in line
    assert "+0 [0, 0]" not in line and "| inconclusive |" in line

    # One variant at its floor against one that moves is a real comparison.
    moving = pd.concat([table("recaption", sloped, noise=0.005, rng_seed=2),
                        table("alt_text", lambda n: 0.0)], ignore_index=True)
    real = compare_variants(moving, "recaption", "alt_text", "pretrain/caption")
    assert real["all_equal"] is False and real["diff_lo"] > 0


# --- too few points ---------------------------------------------------------------------------

@pytest.mark.parametrize(("sizes", "seeds", "count"), [
    ([16, 32], [0], "2 points at 2 sizes"),          # the micro sweep
    ([100, 200], [0, 1, 2], "6 points at 2 sizes"),  # seeds do not make up for sizes
    ([100], [0, 1, 2], "3 points at 1 size"),
])
def test_too_few_points(sizes, seeds, count):
    points = table("reference", sloped, noise=0.01, sizes=sizes, seeds=seeds, rng_seed=3)
    fits = fit_sweep(points, ["pretrain/caption"])
    note = fits.iloc[0]["note"]
    assert note.startswith(TOO_FEW_POINTS) and count in note and "3 sizes or more" in note
    assert math.isnan(fits.iloc[0]["b"])
    report = reproduction_report(points, fits, [], [slope_claim("reference")], {}, [])
    assert "too few points" in fits_row(report, "reference", "pretrain/caption")
    assert "too few points" in claims_rows(report)[0]


def test_too_few_points_and_all_equal_say_both():
    points = table("reference", lambda n: 0.0, sizes=[16, 32], seeds=[0])
    note = fit_sweep(points, ["pretrain/caption"]).iloc[0]["note"]
    assert TOO_FEW_POINTS in note and NOTHING_TO_FIT in note


def test_three_sizes_one_seed_is_enough():
    points = table("reference", sloped, noise=0.002, sizes=[100, 200, 400], seeds=[0],
                   rng_seed=4)
    row = fit_sweep(points, ["pretrain/caption"]).iloc[0]
    assert row["b"] == pytest.approx(0.03, abs=0.01)
    # The slope is measured, but one seed says nothing of its spread.
    assert row["note"] == "fewer than 2 seeds: no interval" and pd.isna(row["b_lo"])


# --- the Claims table -------------------------------------------------------------------------

def test_an_empty_claims_table_says_which_variants_each_claim_needs():
    points = table("reference", sloped, noise=0.005, rng_seed=5)
    tested, untested = _claims(["reference"])
    assert tested == []  # no claim of the sweep is about `reference` alone
    assert len(untested) == len(CLAIMS)
    assert {"claim": CLAIMS[0]["claim"], "missing": ["recaption_filtered"]} in untested
    fits = fit_sweep(points, ["pretrain/caption"])
    report = reproduction_report(points, fits, [], tested, {}, [], untested=untested)
    section = report.split("## Claims", 1)[1].split("## Fits", 1)[0]
    assert "| claim |" not in section  # no header of an empty table
    assert "No claim was tested" in section and "it ran reference" in section
    assert "Recaptions beat alt-text at equal N: needs recaption, alt_text" in section
    assert "needs recaption_filtered" in section and "`scaling.variants`" in section


def test_claims_not_tested_are_listed_under_the_ones_that_are():
    tested, untested = _claims(["recaption", "alt_text"])
    assert [c["metric"] for c in tested] == list(HEADLINE)
    assert all(c["claim"] == "Recaptions beat alt-text at equal N" for c in tested)
    points = pd.concat([table("recaption", sloped, noise=0.005, rng_seed=6),
                        table("alt_text", lambda n: 0.5 * sloped(n), noise=0.005, rng_seed=7)],
                       ignore_index=True)
    comparison = compare_variants(points, "recaption", "alt_text", "pretrain/caption")
    claim = tested[0]
    fits = fit_sweep(points, ["pretrain/caption"])
    report = reproduction_report(points, fits, [comparison], [claim], {}, [],
                                 untested=untested)
    section = report.split("## Claims", 1)[1].split("## Fits", 1)[0]
    assert "| reproduced |" in section
    assert "Not tested (the sweep lacks their variants):" in section
    assert "needs recaption_filtered" in section
    assert "No claim could be judged" not in section


def test_no_claims_and_no_explanation_given():
    points = table("reference", sloped, noise=0.005, rng_seed=8)
    fits = fit_sweep(points, ["pretrain/caption"])
    report = reproduction_report(points, fits, [], [], {}, [])
    assert "No claim was tested: none was given for this sweep's variants (reference)" in report


# --- a sloped table still gets its law -------------------------------------------------------

def test_a_sloped_table_still_gets_its_law():
    points = pd.concat([table("reference", sloped, noise=0.004, rng_seed=9),
                        table("alt_text", lambda n: 0.0)], ignore_index=True)
    fits = fit_sweep(points, ["pretrain/caption"]).set_index("variant")
    good = fits.loc["reference"]
    assert good["note"] == "" and good["best_law"] == "log_linear"
    assert good["b_lo"] > 0 and good["b"] == pytest.approx(0.03, abs=0.01)
    assert bool(good["slope_excludes_zero"]) is True
    report = reproduction_report(points.reset_index(drop=True), fits.reset_index(), [],
                                 [slope_claim("reference")], {}, [])
    line = fits_row(report, "reference", "pretrain/caption")
    assert "| log_linear | log: p " in line and f"{good['b']:+.3g}" in line
    (claim,) = claims_rows(report)
    assert "| reproduced |" in claim
    assert "nothing to fit" in fits_row(report, "alt_text", "pretrain/caption")


# --- the small environment --------------------------------------------------------------------

def test_the_small_environment_validates_and_is_a_sweep_that_can_fit():
    from sail_pipeline.experiments.scaling.plan import plan_points
    from sail_pipeline.glue.project import load_project
    from tests.project import ROOT

    project = load_project("small", ROOT)
    sweep = project.scaling
    assert len(sweep.variants) >= 2 and len(sweep.seeds) >= 2
    assert len(sweep.sizes) >= 3  # MIN_SIZES: fewer would be "too few points"
    ratios = {round(b / a, 6) for a, b in zip(sweep.sizes, sweep.sizes[1:], strict=False)}
    assert len(ratios) == 1 and ratios.pop() > 1  # geometric
    # Every pool the variants draw from holds the largest size: the pools are the world's
    # training scenes (no filter in this environment).
    assert sweep.sizes[-1] <= project.data.world.n_train
    assert len(plan_points(sweep)) == len(sweep.variants) * len(sweep.sizes) * len(sweep.seeds)
    config = (ROOT / "conf/small/globals.yml").read_text()
    assert "data: data/small" in config
