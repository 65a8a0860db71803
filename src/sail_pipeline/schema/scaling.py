"""`scaling`: the data-size sweep of `kedro run --pipelines=scaling`.

A sweep is sizes x seeds x variants. Each point subsamples N pairs from a variant's pool
(nested: a seed's N=1000 set is inside its N=2000 set), pretrains on them in one pass,
evaluates, runs a fixed short SFT and evaluates again. The variants are named in one
registry, `SCALING_VARIANTS`, which the parameters pick from.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from sail_pipeline.schema.base import StrictModel, inherited, neutral
from sail_pipeline.schema.evaluation import EvaluationSettings
from sail_pipeline.schema.quality import FilterParams
from sail_pipeline.schema.stages import PRETRAIN_STAGES
from sail_pipeline.schema.training import TrainParams


@dataclass(frozen=True)
class ScalingVariant:
    """Where a point's pretraining pairs come from, and which pretraining stages run."""

    captions: str                      # a caption source: alt_text, recaption, reference
    description: str
    filtered: bool = False             # only the captions the sweep's filter keeps
    # The pairs beyond the grid's smallest size come from this source instead (noisy
    # alt-text): "Rethinking" reports that adding low-quality data does not help.
    expansion: str | None = None
    stages: tuple[str, ...] = PRETRAIN_STAGES
    # Advance trains the modules the stage registry gives it (vision tower and projector, the
    # LLM frozen, as in SAIL-VL) instead of `scaling.advance.trainable`.
    recipe_modules: bool = False
    # Every size trains as many optimizer steps as the grid's largest: its pretraining
    # stages' epochs times (largest N / N), several passes over its own data. Against the
    # one-pass variant this tells the gain of more distinct data from the gain of more steps.
    steps_of_largest: bool = False


SCALING_VARIANTS: dict[str, ScalingVariant] = {
    "recaption_filtered": ScalingVariant(
        "recaption", "the SAIL recipe: the captioner's captions that pass the quality filter",
        filtered=True),
    "recaption": ScalingVariant("recaption", "every recaption, unfiltered"),
    "alt_text": ScalingVariant("alt_text", "the pool's alt-text, unfiltered"),
    "reference": ScalingVariant(
        "reference", "the strong captioner's detailed captions (GPT-4o's role; the world's "
        "complete captions in the embedded default)"),
    "noisy_expansion": ScalingVariant(
        "recaption", "filtered recaptions up to the smallest size, noisy alt-text beyond it",
        filtered=True, expansion="alt_text"),
    "frozen_llm": ScalingVariant(
        "recaption", "filtered recaptions, Advance with the recipe's modules: the LLM frozen",
        filtered=True, recipe_modules=True),
    "alignment_only": ScalingVariant(
        "recaption", "filtered recaptions, Pretrain-Alignment only (projector), no Advance",
        filtered=True, stages=("alignment",)),
    "steps_control": ScalingVariant(
        "recaption", "the SAIL recipe's data, trained for the largest size's optimizer steps "
        "at every size (several passes over its pairs)", filtered=True, steps_of_largest=True),
}


# Captions need room: at 8 new tokens caption F1 is cut off (0.14 against 0.33 at 40).
POINT_EVALUATION = {"max_new_tokens": 40}


def point_evaluation(**defaults: object) -> EvaluationSettings:
    """An experiment point's evaluation: the recipe's `evaluation`, then these defaults, then
    what the experiment's parameters write."""
    values = POINT_EVALUATION | defaults
    return inherited("evaluation", values,
                     default_factory=lambda: EvaluationSettings.model_validate(values))


class ScalingParams(StrictModel):
    """`scaling`: the grid, the seeds, the variants, and the settings every point shares."""

    sizes: list[int] = Field(..., description="pretraining pairs N per point, increasing")
    seeds: list[int] = Field(..., description="at least 3 for a spread; each changes the "
                             "subsample and the initialisation")
    variants: list[str] = Field(default_factory=lambda: ["recaption_filtered"])
    # Pretraining stages: one pass over the point's pairs (`epochs: 1`), so the budget grows
    # with N as in SAIL-VL. With Advance, Alignment takes half the pairs and Advance the other
    # half (disjoint, as in the recipe); alone, Alignment takes them all.
    # Each stage starts from the recipe's settings of that stage and overrides what differs
    # (`schema.base.inherited`); a budget written here replaces the recipe's.
    alignment: TrainParams = inherited("pretrain.alignment")
    advance: TrainParams = inherited("pretrain.advance")
    # The fixed short SFT after pretraining, on the first `sft_samples` rows of the recipe's
    # SFT-Knowledge table (shuffled when made): every point reading and tokenizing all 69k
    # rows cost 25 s a point, for a budget that uses a few thousand.
    sft: TrainParams = inherited("sft.knowledge")
    sft_samples: int = Field(4000, gt=0)
    after_pretrain: EvaluationSettings = point_evaluation(question_types=["caption"])
    after_sft: EvaluationSettings = point_evaluation()
    # The filter of the `*_filtered` variants; null: `quality.filter`. The recipe's filter
    # may keep too few pairs for the grid's largest size.
    filter: FilterParams | None = None
    # false: a finished point keeps its result, evaluations and final checkpoint, and deletes
    # its training tables (copies of the pool's images) and pretraining checkpoints.
    keep_intermediate: bool = neutral(False)

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, sizes: list[int]) -> list[int]:
        if not sizes:
            raise ValueError("give at least one size")
        if any(n <= 0 for n in sizes):
            raise ValueError(f"sizes must be positive, got {sizes}")
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"sizes must be strictly increasing, got {sizes}")
        return sizes

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("give at least one seed (3 or more for a spread)")
        if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be distinct and >= 0, got {seeds}")
        return seeds

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in SCALING_VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {list(SCALING_VARIANTS)}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"give distinct variant names, got {names}")
        return names

    @model_validator(mode="after")
    def _expansion_needs_a_grid(self) -> ScalingParams:
        if len(self.sizes) < 2 and any(SCALING_VARIANTS[v].expansion for v in self.variants):
            raise ValueError("an expansion variant needs at least two sizes (its clean part is "
                             "the smallest)")
        return self

    @model_validator(mode="after")
    def _steps_control_needs_epochs(self) -> ScalingParams:
        # Its budget is the largest size's passes: only an epochs budget scales that way.
        if any(SCALING_VARIANTS[v].steps_of_largest for v in self.variants):
            for stage in ("alignment", "advance"):
                if getattr(self, stage).epochs is None:
                    raise ValueError(f"the steps_control variant scales scaling.{stage}.epochs "
                                     f"by (largest N / N): give scaling.{stage} an epochs "
                                     "budget, not steps or tokens")
        return self


__all__ = ["SCALING_VARIANTS", "ScalingParams", "ScalingVariant", "point_evaluation"]
