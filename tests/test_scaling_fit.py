"""Scaling-law fits, intervals over seeds, variant comparisons, plots and the report.

Synthetic sweeps with a known truth: 5 sizes (doubling from 1000) × 3 seeds, fixed RNG seeds,
so every assertion is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sail_pipeline.experiments.scaling.fit import (
    bands_for,
    compare_variants,
    fit_log_linear,
    fit_metric,
    fit_power,
    fit_saturating,
    fit_sweep,
    noise_floor,
    seed_log_linear,
)
from sail_pipeline.experiments.scaling.plots import plot_metric, plot_residuals
from sail_pipeline.experiments.scaling.reproduction import reproduction_report
from sail_pipeline.experiments.stats import SeedEstimate, judge

SIZES = [1000 * 2**k for k in range(5)]
SEEDS = [0, 1, 2]


def sweep(variant: str, curve, noise: float, rng_seed: int, metric: str = "m",
          sizes: list[int] = SIZES) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    rows = [{"variant": variant, "n": n, "tokens": 50 * n, "seed": s,
             metric: float(curve(n)) + rng.normal(0.0, noise), "other": "ignored"}
            for n in sizes for s in SEEDS]
    return pd.DataFrame(rows)


def log_linear(a: float, b: float):
    return lambda n: a + b * math.log(n)


def test_log_linear_recovers_a_and_b_and_the_ci_covers_b():
    points = sweep("v", log_linear(0.1, 0.05), noise=0.01, rng_seed=1)
    fit = fit_log_linear(points["n"], points["m"])
    assert fit.law == "log_linear" and fit.n_points == 15
    assert fit.params["b"] == pytest.approx(0.05, abs=0.006)
    assert fit.params["a"] == pytest.approx(0.1, abs=0.06)
    assert fit.r2 > 0.9
    np.testing.assert_allclose(fit.predict(np.array([1000.0])),
                               fit.params["a"] + fit.params["b"] * math.log(1000))

    row = fit_metric(points, "m")
    assert row["b_lo"] < 0.05 < row["b_hi"]
    assert row["gain_per_doubling"] == pytest.approx(row["b"] * math.log(2))
    assert row["slope_excludes_zero"] is True
    assert row["best_law"] == "log_linear" and row["alternative_note"] == ""
    assert row["span"] == 16 and row["n_sizes"] == 5 and row["n_points"] == 15


def test_degenerate_input_raises():
    with pytest.raises(ValueError, match="at least 3"):
        fit_log_linear(np.array([1000, 2000]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="same N"):
        fit_log_linear(np.array([1000, 1000, 1000]), np.array([0.1, 0.2, 0.3]))


def test_saturating_curve_is_clearly_better_than_log_linear():
    sizes = [1000 * 4**k for k in range(5)]
    points = sweep("v", lambda n: 0.8 - 0.5 * (n / 1000) ** -0.7, noise=0.005, rng_seed=2,
                   sizes=sizes)
    fit = fit_saturating(points["n"], points["m"])
    assert fit is not None
    assert fit.params["y_inf"] == pytest.approx(0.8, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(0.7, abs=0.15)

    row = fit_metric(points, "m")
    assert row["best_law"] == "saturating"
    assert row["aic_log_linear"] - row["aic_saturating"] > 2
    assert row["alternative_note"].startswith("saturating fits clearly better (ΔAIC ")


def test_power_law_fits_in_log_and_linear_space():
    n = np.array(SIZES * 3, dtype=float)
    fit = fit_power(n, 0.02 * n**0.3)
    assert fit is not None
    assert fit.params["k"] == pytest.approx(0.3) and fit.params["c"] == pytest.approx(0.02)
    # A zero score forces the linear-space fit.
    shifted = fit_power(np.r_[n, 500.0], np.r_[0.02 * n**0.3, 0.0])
    assert shifted is None or math.isfinite(shifted.aic)


def test_zero_slope_ci_includes_zero():
    points = sweep("flat", lambda n: 0.5, noise=0.02, rng_seed=3)
    boot = seed_log_linear(points["n"], points["m"], points["seed"])
    assert boot["b_lo"] < 0 < boot["b_hi"]
    assert boot["band_n"].shape == boot["band_lo"].shape == boot["band_hi"].shape == (50,)
    assert boot["band_n"][0] == pytest.approx(1000) and boot["band_n"][-1] == pytest.approx(16000)
    assert np.all(boot["band_lo"] <= boot["band_hi"])
    row = fit_metric(points, "m")
    assert row["slope_excludes_zero"] is False


def test_noise_floor_matches_numpy_std():
    points = pd.DataFrame({
        "variant": "v", "n": [100, 100, 100, 200, 200, 400],
        "seed": [0, 1, 2, 0, 1, 0], "m": [0.1, 0.3, 0.2, 0.5, 0.9, 0.7]})
    floor = noise_floor(points, "m")
    assert set(floor["std_by_n"]) == {100, 200}  # 400 has one seed
    assert floor["std_by_n"][100] == pytest.approx(np.std([0.1, 0.3, 0.2], ddof=1))
    assert floor["std_by_n"][200] == pytest.approx(np.std([0.5, 0.9], ddof=1))
    assert floor["mean"] == pytest.approx((np.std([0.1, 0.3, 0.2], ddof=1)
                                          + np.std([0.5, 0.9], ddof=1)) / 2)
    assert floor["max_n"] == 200 and floor["at_max_n"] == floor["std_by_n"][200]


def test_compare_variants_shifted_and_identical():
    base = log_linear(0.2, 0.03)
    a = sweep("a", lambda n: base(n) + 0.1, noise=0.01, rng_seed=4)
    b = sweep("b", base, noise=0.01, rng_seed=5)
    same = sweep("c", base, noise=0.01, rng_seed=6)
    points = pd.concat([a, b, same], ignore_index=True)

    shifted = compare_variants(points, "a", "b", "m")
    assert shifted["common_n"] == SIZES
    assert shifted["diff_lo"] > 0 and shifted["mean_diff"] == pytest.approx(0.1, abs=0.02)
    assert shifted["slope_diff_lo"] < 0 < shifted["slope_diff_hi"]
    expected = (a.groupby("n")["m"].mean() - b.groupby("n")["m"].mean()).to_dict()
    assert shifted["per_n"] == pytest.approx(expected)

    identical = compare_variants(points, "c", "b", "m")
    assert identical["diff_lo"] < 0 < identical["diff_hi"]

    disjoint = points[((points["variant"] == "a") & (points["n"] <= 2000))
                      | ((points["variant"] == "b") & (points["n"] > 2000))]
    none = compare_variants(disjoint, "a", "b", "m")
    assert none["common_n"] == [] and math.isnan(none["mean_diff"]) and none["note"]


def test_curvature_difference_tells_a_linear_curve_from_a_logarithmic_one():
    # Same start and end, different shape: linear in N bends upward against ln N.
    linear = sweep("linear", lambda n: 0.2 + 0.3 * (n - 1000) / 15000, noise=0.01, rng_seed=7)
    logarithmic = sweep("log", lambda n: 0.2 + 0.3 * math.log(n / 1000) / math.log(16),
                        noise=0.01, rng_seed=8)
    shifted_log = sweep("log2", lambda n: 0.5 + 0.3 * math.log(n / 1000) / math.log(16),
                        noise=0.01, rng_seed=9)
    points = pd.concat([linear, logarithmic, shifted_log], ignore_index=True)
    bent = compare_variants(points, "linear", "log", "m")
    assert bent["curvature_diff_lo"] > 0
    # A level shift is not a change of shape.
    level = compare_variants(points, "log2", "log", "m")
    assert level["diff_lo"] > 0 and level["curvature_diff_lo"] < 0 < level["curvature_diff_hi"]
    claim = {"claim": "linear bends more", "kind": "difference", "variant_a": "linear",
             "variant_b": "log", "expected": "increase", "metric": "m", "measure": "curvature_diff"}
    fits = fit_sweep(points, ["m"])
    report = reproduction_report(points, fits, [bent], [claim], {}, [])
    line = next(x for x in report.splitlines() if x.startswith("| linear bends more"))
    assert "curvature difference" in line and "| reproduced |" in line
    two_sizes = points[points["n"] <= 2000]
    assert math.isnan(compare_variants(two_sizes, "linear", "log", "m")["curvature_diff"])
    with pytest.raises(ValueError, match="measure must be one of"):
        reproduction_report(points, fits, [bent], [claim | {"measure": "bend"}], {}, [])


def estimate(mean: float, se: float, seeds: int = 5) -> SeedEstimate:
    """An estimate with a 95% t-interval, as `stats.seed_interval` makes one."""
    from scipy import stats as scipy_stats

    half = scipy_stats.t.ppf(0.975, seeds - 1) * se
    return SeedEstimate(mean, mean - half, mean + half, se, seeds - 1, seeds, 0.95)


@pytest.mark.parametrize(("mean", "se", "expected", "margin", "verdict"), [
    (0.2, 0.02, "increase", None, "reproduced"),
    (-0.2, 0.02, "increase", None, "not reproduced"),
    (0.02, 0.02, "increase", None, "inconclusive"),
    (0.001, 0.002, "increase", 0.02, "not reproduced"),  # shown smaller than the margin
    (-0.2, 0.02, "decrease", None, "reproduced"),
    (0.2, 0.02, "decrease", None, "not reproduced"),
    # "does not help": never shown without a margin, whatever the interval.
    (0.0, 0.001, "no_increase", None, "inconclusive"),
    (-0.3, 0.02, "no_increase", None, "inconclusive"),
    (0.0, 0.001, "no_increase", 0.02, "reproduced"),
    (0.0, 0.02, "no_increase", 0.02, "inconclusive"),  # too noisy to show it
    (0.2, 0.02, "no_increase", 0.02, "not reproduced"),
    (0.0, 0.001, "no_difference", 0.02, "reproduced"),
    (0.015, 0.001, "no_difference", 0.02, "not reproduced"),  # small, but not 0
    (0.0, 0.02, "no_difference", 0.02, "inconclusive"),
    (float("nan"), float("nan"), "increase", None, "inconclusive"),
])
def test_every_verdict_is_reachable_and_absence_needs_a_margin(mean, se, expected, margin,
                                                                verdict):
    assert judge(estimate(mean, se), expected, margin).verdict == verdict


def test_a_verdict_states_its_minimum_detectable_effect_and_the_seeds_it_needs():
    from scipy import stats as scipy_stats

    judged = judge(estimate(0.01, 0.01, seeds=3), "increase", margin=0.02)
    t = scipy_stats.t.ppf(0.975, 2) + scipy_stats.t.ppf(0.8, 2)
    assert judged.mde == pytest.approx(t * 0.01)
    assert judged.seeds_for_margin is not None and judged.seeds_for_margin > 3
    # More seeds than that would detect the margin; one fewer would not.
    sd = 0.01 * math.sqrt(3)
    k = judged.seeds_for_margin
    power_t = scipy_stats.t.ppf(0.975, k - 1) + scipy_stats.t.ppf(0.8, k - 1)
    assert power_t * sd / math.sqrt(k) <= 0.02
    power_t = scipy_stats.t.ppf(0.975, k - 2) + scipy_stats.t.ppf(0.8, k - 2)
    assert power_t * sd / math.sqrt(k - 1) > 0.02


def test_fit_sweep_notes_a_variant_with_two_points():
    good = sweep("good", log_linear(0.1, 0.05), noise=0.01, rng_seed=7)
    short = sweep("short", log_linear(0.1, 0.05), noise=0.01, rng_seed=8).iloc[:2]
    points = pd.concat([good, short], ignore_index=True)
    points.loc[0, "m"] = np.nan  # a missing metric value is dropped, not fitted
    fits = fit_sweep(points, ["m"])
    assert list(fits["variant"]) == ["good", "short"]
    good_row, short_row = fits.iloc[0], fits.iloc[1]
    assert good_row["n_points"] == 14 and good_row["note"] == ""
    assert short_row["note"] == ("too few points: 2 points at 1 size (a law needs 3 sizes "
                                 "or more)")
    assert math.isnan(short_row["b"]) and pd.isna(short_row["slope_excludes_zero"])


@pytest.fixture(scope="module")
def two_variants():
    points = pd.concat([sweep("recaption", log_linear(0.1, 0.05), 0.01, rng_seed=9),
                        sweep("alt_text", log_linear(0.1, 0.03), 0.01, rng_seed=10)],
                       ignore_index=True)
    return points, fit_sweep(points, ["m"])


def test_plots_return_figures_with_a_log_x_axis(two_variants, tmp_path):
    from matplotlib.figure import Figure

    points, fits = two_variants
    figure = plot_metric(points, fits, "m", bands=bands_for(points, "m"))
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1k", "2k", "4k", "8k", "16k"]
    labels = ax.get_legend_handles_labels()[1]
    assert len(labels) == 2 and labels[0].startswith("recaption: b=")
    figure.savefig(tmp_path / "m.png")

    residuals = plot_residuals(points, fits, "m")
    assert isinstance(residuals, Figure) and residuals.axes[0].get_xscale() == "log"


def test_reproduction_report(two_variants):
    points, fits = two_variants
    comparison = compare_variants(points, "recaption", "alt_text", "m")
    claims = [
        {"claim": "recaption scales log-linearly", "kind": "slope", "variant": "recaption",
         "metric": "m", "expected": "increase"},
        {"claim": "recaption beats alt-text", "kind": "difference",
         "variant_a": "recaption", "variant_b": "alt_text", "metric": "m", "expected": "increase"},
        {"claim": "alt-text does not help over recaption", "kind": "difference",
         "variant_a": "alt_text", "variant_b": "recaption", "metric": "m", "expected": "no_increase"},
        {"claim": "a variant that was not run", "kind": "slope", "variant": "absent",
         "metric": "m", "expected": "increase"},
    ]
    missing = ["noisy_expansion/n=16000/seed=2", "reference/n=1000/seed=0"]
    report = reproduction_report(points, fits, [comparison], claims,
                                 {"m against N": "figures/m.png"}, missing,
                                 {"pretrain": 3600.0, "sft": 125.0})
    claim_rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines()
                  if line.startswith("| ") and " | " in line}
    assert "| reproduced |" in claim_rows["recaption scales log-linearly"]
    assert "| reproduced |" in claim_rows["recaption beats alt-text"]
    # alt_text − recaption is negative: "does not help" holds.
    assert "| reproduced |" in claim_rows["alt-text does not help over recaption"]
    assert "| inconclusive |" in claim_rows["a variant that was not run"]
    for name in missing:
        assert name in report
    assert "points missing: 2" in report
    assert "![m against N](figures/m.png)" in report
    assert "## Wall time" in report and "1:00:00" in report
    b = fits.set_index("variant").loc["recaption", "b"]
    assert f"{b:+.3g}" in report  # numbers come from the fit table


def test_log_linear_claim_with_low_r2_is_not_reproduced():
    points = sweep("noisy", log_linear(0.1, 0.01), noise=0.03, rng_seed=11)
    fits = fit_sweep(points, ["m"])
    assert fits.loc[0, "r2"] < 0.9
    claim = {"claim": "noisy scales", "kind": "slope", "variant": "noisy", "metric": "m",
             "expected": "increase"}
    report = reproduction_report(points, fits, [], [claim], {}, [], None)
    line = next(row for row in report.splitlines() if row.startswith("| noisy scales"))
    assert "below the 0.9 goal" in line and "| reproduced |" not in line


def test_the_slope_interval_is_a_t_interval_over_the_seeds_own_slopes():
    from scipy import stats as scipy_stats

    rng = np.random.default_rng(12)
    rows = []
    centre = np.mean(np.log(SIZES))
    for seed in range(4):  # each seed its own slope: its subsets are nested across N
        own = rng.normal(0, 0.01)
        rows += [{"variant": "v", "n": n, "seed": seed, "m": 0.2 + 0.03 * math.log(n)
                  + own * (math.log(n) - centre) + rng.normal(0, 0.002)} for n in SIZES]
    points = pd.DataFrame(rows)
    row = fit_metric(points, "m")
    slopes = [np.polyfit(np.log(g["n"]), g["m"], 1)[0] for _, g in points.groupby("seed")]
    half = scipy_stats.t.ppf(0.975, 3) * np.std(slopes, ddof=1) / 2
    assert row["seeds"] == 4 and row["df"] == 3
    assert row["b"] == pytest.approx(np.mean(slopes))
    assert (row["b_lo"], row["b_hi"]) == pytest.approx((np.mean(slopes) - half,
                                                        np.mean(slopes) + half))
    # The 20 points treated as independent would give a far narrower interval: a seed's own
    # slope is one draw, not five.
    x = np.log(points["n"])
    residuals = points["m"] - fit_log_linear(points["n"], points["m"]).predict(points["n"])
    pooled_se = np.sqrt(np.sum(residuals ** 2) / 18 / np.sum((x - x.mean()) ** 2))
    assert row["b_se"] > 1.5 * pooled_se


def test_comparisons_pair_by_seed_so_a_shared_seed_effect_cancels():
    rng = np.random.default_rng(13)
    rows = []
    for seed in range(5):
        shared = rng.normal(0, 0.05)  # the seed's subsets and initialisation, in both variants
        for n in SIZES:
            base = 0.2 + 0.03 * math.log(n / 1000) + shared
            rows += [{"variant": "a", "n": n, "seed": seed, "m": base + 0.02
                      + rng.normal(0, 0.002)},
                     {"variant": "b", "n": n, "seed": seed, "m": base + rng.normal(0, 0.002)}]
    points = pd.DataFrame(rows)
    paired = compare_variants(points, "a", "b", "m")
    assert paired["seeds"] == 5 and paired["df"] == 4
    assert paired["diff_lo"] > 0.015 and paired["diff_hi"] < 0.025
    # Unpaired (seeds relabelled in b), the shared effect no longer cancels.
    shuffled = points.copy()
    shuffled.loc[shuffled["variant"] == "b", "seed"] = (
        shuffled.loc[shuffled["variant"] == "b", "seed"] + 1) % 5
    unpaired = compare_variants(shuffled, "a", "b", "m")
    assert unpaired["diff_hi"] - unpaired["diff_lo"] > 5 * (paired["diff_hi"] - paired["diff_lo"])


def _seeded(curve, seeds: int = 3, seed_sd: float = 0.01, noise: float = 0.003,
            rng_seed: int = 14, sizes: list[int] = SIZES) -> pd.DataFrame:
    """Points of one variant: each seed its own level, shared by its N, and each point's own
    noise."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in range(seeds):
        level = rng.normal(0, seed_sd)
        rows += [{"variant": "v", "n": n, "seed": seed,
                  "m": curve(n) + level + rng.normal(0, noise)} for n in sizes]
    return pd.DataFrame(rows)


def test_lack_of_fit_and_extrapolation_tell_a_line_in_n_from_the_log_law():
    from sail_pipeline.experiments.scaling.fit import extrapolation, lack_of_fit

    sizes = [125, 300, 700, 1700, 4000]
    linear = _seeded(lambda n: 0.3 + 0.1 * n / 4000, sizes=sizes)
    logarithmic = _seeded(lambda n: 0.3 + 0.03 * math.log(n / 125), sizes=sizes)
    for points, wrong, right in ((linear, "log_linear", "linear"),
                                 (logarithmic, "linear", "log_linear")):
        n, y, seed = points["n"], points["m"], points["seed"]
        assert lack_of_fit(n, y, seed, wrong)[1] < 0.01
        assert lack_of_fit(n, y, seed, right)[1] > 0.05
        missed = extrapolation(n, y, seed, wrong)
        assert missed["n"] == 4000 and (missed["error_lo"] > 0 or missed["error_hi"] < 0)
        held = extrapolation(n, y, seed, right)
        assert held["error_lo"] < 0 < held["error_hi"]
    # The log law fitted on N ≤ 1700 undershoots a line in N at 4000, as the review found.
    assert extrapolation(linear["n"], linear["m"], linear["seed"], "log_linear")["error"] > 0


def test_a_log_law_claim_on_a_line_in_n_is_not_reproduced():
    points = _seeded(lambda n: 0.3 + 0.1 * n / 4000, sizes=[125, 300, 700, 1700, 4000])
    fits = fit_sweep(points, ["m"])
    claim = {"claim": "v scales log-linearly", "kind": "slope", "variant": "v", "metric": "m",
             "expected": "increase"}
    report = reproduction_report(points, fits, [], [claim], {}, [])
    line = next(row for row in report.splitlines() if row.startswith("| v scales"))
    assert "| reproduced |" not in line
    assert "lack of fit" in line or "misses there by" in line or "fits clearly better" in line
    assert "linear in N: p" in report


def test_the_axes_figure_plots_a_score_against_samples_tokens_and_steps(tmp_path):
    from sail_pipeline.experiments.scaling.plots import plot_axes

    points = sweep("v", log_linear(0.1, 0.05), noise=0.01, rng_seed=15)
    points["samples"] = points["n"]
    points["steps"] = np.ceil(points["n"] / 32)
    figure = plot_axes(points, "m")
    assert [ax.get_xlabel() for ax in figure.axes] == [
        "pretraining samples N (distinct) (log scale)",
        "pretraining tokens (distinct, one pass) (log scale)",
        "pretraining optimizer steps (log scale)"]
    assert all(ax.get_xscale() == "log" for ax in figure.axes)
    figure.savefig(tmp_path / "axes.png")
    points["steps"] = np.nan  # a store from before steps were recorded: that panel is left out
    assert len(plot_axes(points, "m").axes) == 2


def test_a_power_law_whose_exponent_runs_off_is_no_fit_not_a_crash(monkeypatch):
    """The default sweep's calibration drew a sweep whose linear-space power fit ended at an
    exponent so large that c = c' · N0^(-k) overflowed (OverflowError ended the fit node)."""
    from sail_pipeline.experiments.scaling import fit as fit_module

    monkeypatch.setattr(fit_module, "_curve_fit", lambda *args, **kwargs: np.array([1.0, -500.0]))
    n = np.array(SIZES * 3, dtype=float)
    y = np.r_[np.zeros(5), np.full(10, 0.3)]  # a zero score forces the linear-space fit
    assert fit_power(n, y) is None
