"""`statistics:` in parameters.yml: how every experiment's verdicts are made.

One place for the level of the intervals, the tests' alpha and power, and the equivalence
margins that "does not help" and "no difference" need (`experiments.stats`). The margins are
the smallest effects worth reporting, in score units (scores are 0 to 1), declared before the
results are seen: change them only with a reason that is not the results.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from sail_pipeline.schema.base import StrictModel

# The measures a claim can be judged on, and what each margin is in.
MARGIN_MEASURES = {
    "mean_diff": "the mean difference of two variants (score units)",
    "gain_per_doubling": "a slope, as the score gained per doubling of N",
    "slope_diff": "a difference of two slopes, per ln N",
    "curvature_diff": "a difference of two bends, per (ln N)²",
}


class StatisticsParams(StrictModel):
    """`statistics:`: the intervals, the tests, and the equivalence margins."""

    level: float = Field(0.95, gt=0.5, lt=1, description="two-sided level of every interval")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided level of each test "
                         "(TOST's two tests, Individual Select's keep rule)")
    power: float = Field(0.8, gt=0.5, lt=1, description="the power at which a minimum "
                         "detectable effect and the seeds needed are stated")
    calibration_runs: int = Field(
        200, ge=0, description="simulated sweeps per planted truth in a report's calibration "
        "of its verdict rules (experiments.calibration); 0: no calibration")
    margins: dict[str, float] = Field(
        default_factory=lambda: {"mean_diff": 0.02, "gain_per_doubling": 0.01},
        description="equivalence margin per measure (score units); a measure without one "
        "cannot be shown to be absent, only inconclusive")

    @field_validator("margins")
    @classmethod
    def _known_positive(cls, margins: dict[str, float]) -> dict[str, float]:
        for measure, margin in margins.items():
            if measure not in MARGIN_MEASURES:
                raise ValueError(f"margins.{measure}: not a measure; use one of "
                                 f"{sorted(MARGIN_MEASURES)}")
            if not margin > 0:
                raise ValueError(f"margins.{measure}: a margin must be > 0, got {margin}")
        return margins

    def margin(self, measure: str) -> float | None:
        return self.margins.get(measure)
