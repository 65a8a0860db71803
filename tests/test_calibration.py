"""The verdict rules on planted truths (experiments.calibration): the calibration table that
the reproduction report prints, pinned with a tolerance.

The design is the default sweep's (5 sizes, 3 seeds) and the noise of the order measured on
it. The runs are few, so each bound allows for the binomial spread of the share it checks:
at 160 runs, a true 5% is seen above 10% less than 1% of the time.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from sail_pipeline.experiments.calibration import (
    NoiseModel,
    calibrate,
    section,
    shape_recovery,
    simulate,
)
from sail_pipeline.schema import StatisticsParams

SIZES = [125, 300, 700, 1700, 4000]
NOISE = NoiseModel(seed_sd=0.02, slope_sd=0.004, point_sd=0.01)
RUNS = 160
FALSE_POSITIVE_BOUND = 0.10  # alpha 5%, plus the spread of 160 runs


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return calibrate(SIZES, 3, NOISE, StatisticsParams(), runs=RUNS).set_index(
        ["rule", "planted"])


def test_no_rule_says_reproduced_more_than_alpha_when_the_effect_is_not_there(table):
    null_rows = table[table["wanted"] == "reproduced ≤ alpha"]
    assert len(null_rows) == 3  # the slope's null, "does not help" at its margin, a − b's null
    assert (null_rows["reproduced"] <= FALSE_POSITIVE_BOUND).all(), null_rows


def test_each_rule_finds_a_large_effect_more_often_than_a_small_one(table):
    slope = table.loc["b > 0 (slope)", "reproduced"]
    assert slope["gain 0.03 per doubling"] > slope["gain 0.01 per doubling"] >= slope["no slope"]
    diff = table.loc["a beats b (difference)", "reproduced"]
    assert diff["a − b = 0.06"] > diff["a − b = 0.02"] >= diff["no difference"]
    assert diff["a − b = 0.06"] > 0.3  # 3 unpaired seeds of sd 0.02: about 40%


def test_does_not_help_can_fail_both_ways(table):
    rule = table.loc["does not help (slope)"]
    assert rule.loc["no slope", "reproduced"] > rule.loc["gain 0.01 (the margin)", "reproduced"]
    assert rule.loc["gain 0.03", "not reproduced"] > 0.5
    # Without a margin it is never shown, only refuted or left open.
    open_rule = calibrate(SIZES, 3, NOISE, StatisticsParams(margins={}), runs=20)
    flat = open_rule[open_rule["rule"] == "does not help (slope)"]
    assert (flat["reproduced"] == 0).all()


def test_the_fit_recovers_a_planted_shape_when_the_noise_allows():
    quiet = NoiseModel(seed_sd=0.005, slope_sd=0.0, point_sd=0.002)
    shapes = shape_recovery(SIZES, 3, quiet, gain=0.03, runs=30).set_index("planted")
    assert (shapes["recovered"] >= 0.8).all(), shapes


def test_the_noise_of_a_sweep_is_measured_back_from_its_points():
    planted = NoiseModel(seed_sd=0.02, slope_sd=0.005, point_sd=0.004)
    points = simulate(SIZES, 400, planted, {"a": lambda n: 0.01 * np.log(n)},
                      np.random.default_rng(0))
    measured = NoiseModel.measure(points, "score")
    assert measured.seed_sd == pytest.approx(planted.seed_sd, rel=0.15)
    assert measured.slope_sd == pytest.approx(planted.slope_sd, rel=0.15)
    assert measured.point_sd == pytest.approx(planted.point_sd, rel=0.1)


def test_the_report_section_names_the_design_the_noise_and_every_rule():
    points = simulate(SIZES, 3, NOISE, {"recaption_filtered": lambda n: 0.01 * np.log(n)},
                      np.random.default_rng(1)).rename(columns={"score": "sft/average"})
    text = section(points, "recaption_filtered", "sft/average", StatisticsParams(), runs=10)
    assert "5 sizes, 3 seeds" in text and "slope sd" in text
    for rule in ("b > 0 (slope)", "does not help (slope)", "a beats b (difference)"):
        assert f"| {rule} |" in text
    assert "| linear |" in text
    one_seed = points[points["seed"] == 0]
    assert section(one_seed, "recaption_filtered", "sft/average", StatisticsParams(), 10) == ""


def test_tasks_at_chance_are_flagged_and_left_out_of_the_verdict_average():
    from sail_pipeline.experiments import chance

    rng = np.random.default_rng(5)
    rows = []
    for n in (100, 200, 400):
        for seed in range(4):
            count = 0.6 + 0.0001 * n + rng.normal(0, 0.01)
            pope = rng.choice([0.0, 0.7])  # F1 that flips from seed to seed: chance 0.5
            caption = 0.3 + rng.normal(0, 0.01)
            rows.append({"variant": "v", "n": n, "seed": seed, "sft/count": count,
                         "sft/pope": pope, "sft/caption": caption,
                         "sft/average": 100 * (count + pope + caption) / 3})
    points = pd.DataFrame(rows)
    table = chance.task_table(points, {"world_count": 1 / 3, "world_pope": 0.5}, "sft")
    flags = table.set_index("task")["above_chance"]
    assert flags.to_dict() == {"count": True, "pope": False, "caption": True}
    averaged = chance.with_verdict_average(points, ["count", "caption"], "sft")
    assert averaged["sft/verdict_average"].to_numpy() == pytest.approx(
        ((points["sft/count"] + points["sft/caption"]) / 2).to_numpy())
    text = chance.section(table, averaged, "sft", "decided on v")
    assert "| pope |" in text and "no: at chance" in text
    found = re.search(r"every task ([0-9.]+); the tasks above chance ([0-9]+\.[0-9]+)", text)
    before, after = float(found.group(1)), float(found.group(2))
    assert after < before / 3  # the flipping task was most of the average's seed noise
