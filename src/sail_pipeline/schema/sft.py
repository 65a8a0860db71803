"""`sft`: the curriculum's stages, the candidate SFT sets and each stage's mixture of them.

The built-in candidate sets are listed here as plain data (their builders live in
`sail_pipeline.sft_data.candidates`, keyed by the same names), so that the parameter schema can
check a mixture's sources without importing pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, create_model, field_validator, model_validator

from sail_pipeline.schema.base import StrictModel
from sail_pipeline.schema.stages import SFT_STAGES
from sail_pipeline.schema.training import TrainParams

# SAIL-VL's four data groups: General VQA, OCR VQA, Math, Text.
Group = Literal["general", "ocr", "math", "text"]
GROUPS: tuple[str, ...] = ("general", "ocr", "math", "text")


@dataclass(frozen=True)
class CandidateSpec:
    name: str
    group: Group
    # 1 (one short answer) .. 4 (every question of a scene in one conversation)
    difficulty: int
    # Why the set is planted harm (a selection method should reject it); None: a real set.
    harm: str | None
    description: str


_CANDIDATES = (
    CandidateSpec("general_vqa", "general", 1, None,
                  "colour, shape and position questions with one-word answers"),
    CandidateSpec("probes", "general", 1, None,
                  "POPE / MME yes-no and MMBench lettered-choice questions"),
    CandidateSpec("text_only", "text", 1, None,
                  "questions about numbers, colours and shapes with no image"),
    CandidateSpec("counting", "math", 2, None,
                  "how many shapes, and how many after one is added or taken away"),
    CandidateSpec("ocr_vqa", "ocr", 2, None, "read the word written in the image"),
    CandidateSpec("multi_turn", "general", 3, None,
                  "2-3 turn conversations: a description request among questions"),
    CandidateSpec("detailed_captions", "general", 3, None,
                  "long detailed descriptions of the image (the pretraining task's format)"),
    CandidateSpec("hard_multi_turn", "general", 4, None,
                  "every question about a scene in one conversation"),
    CandidateSpec("wrong_answers", "general", 1, "each answer is another choice's",
                  "planted harm: one-word questions answered wrongly"),
    CandidateSpec("other_image", "general", 1, "each answer is about another scene",
                  "planted harm: one-word questions paired with another scene's image"),
    CandidateSpec("wrong_format", "general", 1,
                  "right facts in a rambling sentence where one word was asked for",
                  "planted harm: right facts, wrong format"),
)
CANDIDATES: dict[str, CandidateSpec] = {c.name: c for c in _CANDIDATES}
HARMFUL_CANDIDATES = tuple(c.name for c in _CANDIDATES if c.harm is not None)

# The schedules an SFT run can follow: the recipe's three stages in order, or one stage on the
# union of the three mixtures, shuffled (the paper's "all-in-one" baseline).
Schedule = Literal["curriculum", "all_in_one"]
ALL_IN_ONE = "all_in_one"


class CandidateSetParams(StrictModel):
    """A user's candidate SFT set: LLaVA JSON (`conversations` with `from`/`value`) or Parquet
    in the project's layout (`id`, `image` bytes or null, `messages` as JSON)."""

    path: str
    # null: from the file's suffix (.json -> llava_json, .parquet -> parquet)
    format: Literal["llava_json", "parquet"] | None = None
    # Where a LLaVA entry's `image` paths are relative to (null: the JSON's folder).
    image_folder: str | None = None
    group: Group = "general"

    def resolved_format(self) -> str:
        if self.format is not None:
            return self.format
        suffix = Path(self.path).suffix.lower()
        if suffix == ".json":
            return "llava_json"
        if suffix == ".parquet":
            return "parquet"
        raise ValueError(f"cannot tell the format of {self.path!r} from its suffix; set `format` "
                         f"(llava_json or parquet)")


class MixtureParams(StrictModel):
    """One stage's data: `size` rows drawn from `sources` in the given proportions, reproducibly
    from the run's seed. A source smaller than its share is repeated (and counted so)."""

    size: int = Field(gt=0)
    # Rows of the held-out mixture, drawn the same way from the benchmark split's sets; the
    # stage's held-out loss reads its first `eval_samples`.
    eval_size: int = Field(512, ge=0)
    # name -> proportion. An override (conf/local, a variant, --params) merges into the base
    # mixture's sources, so `null` is how it leaves a source out.
    sources: dict[str, float | None]

    @field_validator("sources")
    @classmethod
    def _proportions(cls, sources: dict[str, float | None]) -> dict[str, float]:
        sources = {name: share for name, share in sources.items() if share is not None}
        if not sources:
            raise ValueError("a mixture needs at least one source")
        bad = {name: share for name, share in sources.items() if not share > 0}
        if bad:
            raise ValueError(f"every proportion must be > 0 (got {bad}); give a source `null` "
                             f"to leave it out")
        total = sum(sources.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"proportions sum to {total:.6g}, not 1: {sources} (an override "
                             f"merges into the base mixture's sources: give the ones to drop "
                             f"`null`)")
        return sources


SftMixtures = create_model("SftMixtures", __base__=StrictModel, __module__=__name__,
                           **{stage: (MixtureParams, ...) for stage in SFT_STAGES})
SftMixtures.__doc__ = "`sft.mixtures`: one mixture per stage of the curriculum."


class _SftBase(StrictModel):
    schedule: Schedule = "curriculum"
    # Your own candidate sets, by name; a mixture or a selection experiment names them.
    candidates: dict[str, CandidateSetParams] = Field(default_factory=dict)
    mixtures: SftMixtures  # type: ignore[valid-type]

    @field_validator("candidates")
    @classmethod
    def _new_names(cls, candidates: dict[str, CandidateSetParams]
                   ) -> dict[str, CandidateSetParams]:
        for name in candidates:
            if name in CANDIDATES:
                raise ValueError(f"candidate {name!r} is a built-in set; give yours another name")
            if not name.replace("_", "").isalnum() or not name[:1].isalpha():
                raise ValueError(f"candidate name {name!r} must be letters, digits and _")
        return candidates

    @model_validator(mode="after")
    def _known_sources(self) -> _SftBase:
        known = [*CANDIDATES, *self.candidates]
        problems = []
        for stage in SFT_STAGES:
            for source in getattr(self.mixtures, stage).sources:
                if source not in known:
                    problems.append(f"mixtures.{stage}.sources: unknown candidate set "
                                    f"{source!r}; known: {known}")
        if problems:
            raise ValueError("; ".join(problems))
        if self.schedule == ALL_IN_ONE:
            kinds = {stage: _budget_kind(getattr(self, stage)) for stage in SFT_STAGES}
            if len(set(kinds.values())) != 1 or "epochs" in kinds.values():
                raise ValueError(f"schedule all_in_one adds the stages' budgets, so they must "
                                 f"all be `tokens` or all `steps` (got {kinds})")
        return self

    def candidate_names(self) -> list[str]:
        """Every set a mixture draws from, in first-use order."""
        used = (s for stage in SFT_STAGES for s in getattr(self.mixtures, stage).sources)
        return list(dict.fromkeys(used))

    def all_in_one(self) -> TrainParams:
        """The one stage of `all_in_one`: the first stage's settings, the stages' budgets
        (tokens, or steps) added."""
        first: TrainParams = getattr(self, SFT_STAGES[0])
        kind = _budget_kind(first)
        return first.model_copy(update={kind: sum(getattr(getattr(self, stage), kind)
                                                  for stage in SFT_STAGES)})


def _budget_kind(train: TrainParams) -> str:
    return next(name for name in ("steps", "tokens", "epochs") if getattr(train, name) is not None)


# One field per stage of the registry: adding a stage there adds its key here.
SftParams = create_model("SftParams", __base__=_SftBase, __module__=__name__,
                         **{name: (TrainParams, ...) for name in SFT_STAGES})
SftParams.__doc__ = "`sft`: the curriculum's stages in the registry's order, and their data."
