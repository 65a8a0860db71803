"""`selection`: SAIL-VL's SFT data experiments (quality, composition, incremental evaluation).

Every experiment trains short SFT runs ("points") from one pretrained checkpoint on tables
drawn from the candidate sets (`sft.candidates` and the built-in ones) and evaluates each;
points with identical inputs are trained once and reused by every experiment that needs them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sail_pipeline.schema.base import StrictModel, inherited
from sail_pipeline.schema.evaluation import EvaluationSettings
from sail_pipeline.schema.scaling import point_evaluation
from sail_pipeline.schema.sft import MixtureParams
from sail_pipeline.schema.training import TrainParams

# The experiments a run makes by default; every name of the registry
# (sail_pipeline.experiments.selection.registry.SELECTION_EXPERIMENTS) may be named, which the run checks
# when it starts.
EXPERIMENTS: tuple[str, ...] = ("quality", "composition", "incremental", "schedule")


def _increasing(sizes: list[int], fewest: int, why: str) -> list[int]:
    if len(sizes) < fewest or sizes[0] <= 0 or any(
            b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise ValueError(f"give at least {fewest} positive, increasing sizes ({why}); got "
                         f"{sizes}")
    return sizes


class CandidateQualityParams(StrictModel):
    """Rank each candidate by training on subsets of it alone, at several subset sizes."""

    candidates: list[str]
    sizes: list[int] = Field(..., description="rows per subset, increasing; nested per seed")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        return _increasing(sizes, 2, "the ranking's stability is measured across them")


class ScheduleParams(StrictModel):
    """Curriculum vs all-in-one SFT at rising data sizes, from the same checkpoint.

    A size is the SFT rows in all. The curriculum splits them across its stages as
    `sft.mixtures`' sizes do and draws each stage's rows from its mixture's sources; all-in-one
    trains one stage on the same rows, shuffled. Each stage passes over its rows once, with its
    `sft.<stage>` settings (all-in-one: the first stage's), so the data is all that changes.
    """

    sizes: list[int] = Field(..., description="SFT rows in all, increasing")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        return _increasing(sizes, 3, "a curve's shape needs 3; SAIL-VL's claim wants 4 or more")


class CompositionParams(StrictModel):
    """Halve (or drop) one group of the base mixture at a time and watch the average."""

    base: MixtureParams
    action: Literal["halve", "drop"] = "halve"


class IncrementalParams(StrictModel):
    """Individual Select: add candidates to a base pool one at a time, in this order; keep one
    when a paired one-sided t-test over seeds (at `statistics.alpha`) shows its gain in the
    benchmark average above `min_gain`."""

    base: MixtureParams
    candidates: list[str]
    rows_per_candidate: int = Field(gt=0)
    min_gain: float = Field(0.0, ge=0, description="the gain a candidate must be shown to "
                            "beat (score units); 0: any gain")


class SelectionParams(StrictModel):
    experiments: list[str] = Field(
        default_factory=lambda: list(EXPERIMENTS))
    seeds: list[int]
    # Every point's SFT: SFT-Knowledge's settings, one pass over its table by default
    # (`epochs: 1`), from the pretrained checkpoint (`advance_model`).
    train: TrainParams = inherited("sft.knowledge")
    evaluation: EvaluationSettings = point_evaluation()
    quality: CandidateQualityParams
    composition: CompositionParams
    incremental: IncrementalParams
    schedule: ScheduleParams

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError("give at least one seed, each once (3 or more for a spread)")
        return seeds

    @model_validator(mode="after")
    def _unique_candidates(self) -> SelectionParams:
        for key, names in (("quality.candidates", self.quality.candidates),
                           ("incremental.candidates", self.incremental.candidates)):
            if len(set(names)) != len(names) or not names:
                raise ValueError(f"selection.{key}: give each candidate once (got {names})")
        return self

    def drawn_candidates(self) -> list[str]:
        """The sets that the experiments in `experiments` draw from (`schedule` draws from the
        SFT mixtures' sets, which `sft` names)."""
        drawn = {"quality": self.quality.candidates,
                 "composition": [*self.composition.base.sources],
                 "lr_sweep": [*self.composition.base.sources],
                 "incremental": [*self.incremental.base.sources, *self.incremental.candidates]}
        return list(dict.fromkeys(name for experiment in self.experiments
                                  for name in drawn.get(experiment, [])))

    def candidate_names(self) -> list[str]:
        """Every set some experiment draws from, in first-use order."""
        return list(dict.fromkeys([
            *self.quality.candidates, *self.composition.base.sources,
            *self.incremental.base.sources, *self.incremental.candidates]))
