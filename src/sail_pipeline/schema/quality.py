"""`quality`: the signals captions are scored by, and the rules that filter them.

Each default is declared here once; `parameters_quality.yml` sets only what the embedded
default changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sail_pipeline.schema.base import StrictModel, neutral
from sail_pipeline.schema.captioning import _ApiBackendChoice
from sail_pipeline.schema.executor import ExecutorParams


class JudgeParams(_ApiBackendChoice):
    """`quality.judge`: a judge model's 1-5 scores of visual-information richness (VIR) and
    image-text alignment (ITA) per caption, as SAIL-Caption2 filters by them.

    `api` (the endpoint's settings, required exactly when `backend` is `api`) comes from
    `_ApiBackendChoice`, shared with the captioning settings.
    """

    enabled: bool = True
    # oracle: the embedded world's ground truth stands in for the judge; api: any
    # OpenAI-compatible endpoint (GPT-4o, a judge VLM served by vLLM / LMDeploy).
    backend: Literal["oracle", "api"] = "oracle"
    credentials: str = neutral("judge", description="entry of conf/local/credentials.yml")
    batch_size: int = neutral(64, gt=0, description="items per judge call "
                              "(api: more than its concurrency; each item is two requests)")


# Every signal column the quality pipeline writes (tests/test_quality_pipeline.py checks that
# the code writes exactly these); thresholds and the top-fraction rule may name any of them.
SIGNALS: tuple[str, ...] = (
    "words", "tokens", "distinct_1", "distinct_2", "distinct_3", "distinct_4",
    "word_repetition_ratio", "special_char_ratio", "lexical_richness",
    "nouns", "verbs", "adjectives",
    "width", "height", "aspect_ratio", "sharpness", "entropy",
    "clip_score", "loglik_image", "image_gain", "judge_vir", "judge_ita",
)

CaptionSource = str  # alt_text, recaption, reference, or the name of an extra source
# The caption sources every pool has; an extra source adds a name beside them.
BUILT_IN_SOURCES: tuple[str, ...] = ("alt_text", "recaption", "reference")
# The stand-in CLIP holds out max(10, a tenth) of its pairs to measure retrieval and trains on
# the rest: below this it has almost nothing to learn from (`quality.clip.source: train`).
MIN_CLIP_PAIRS = 20


class ExtraCaptionSource(StrictModel):
    """A caption column of the user's own (another captioner's output, a dataset's captions)."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]*$")
    path: Path = Field(..., description="a Parquet file with one row per pool id")
    id_column: str = "id"
    caption_column: str = "caption"


class ClipParams(StrictModel):
    """`quality.clip`: the CLIP model that scores (image, caption) pairs.

    `train`: a tiny stand-in trained contrastively on the reference pairs (the embedded
    default); `path`: a local Hugging Face CLIPModel directory with its tokenizer and image
    processor (e.g. a downloaded openai/clip-vit-base-patch32).
    """

    source: Literal["train", "path"] = "train"
    path: Path | None = None
    image_size: int = Field(64, gt=0)
    patch_size: int = Field(16, gt=0)
    hidden_size: int = Field(64, gt=0)
    layers: int = Field(2, gt=0)
    heads: int = Field(4, gt=0)
    projection_dim: int = Field(64, gt=0)
    max_text_tokens: int = Field(64, gt=4)
    steps: int = Field(300, gt=0)
    batch_size: int = Field(128, gt=1)
    lr: float = Field(2.0e-3, gt=0)
    score_batch_size: int = neutral(256, gt=0)

    @model_validator(mode="after")
    def _path_with_source(self) -> ClipParams:
        if (self.source == "path") != (self.path is not None):
            raise ValueError("clip.path is required with source: path, and only then")
        if self.image_size % self.patch_size:
            raise ValueError(f"clip.image_size {self.image_size} is not a multiple of "
                             f"clip.patch_size {self.patch_size}")
        return self


class LikelihoodParams(StrictModel):
    """`quality.likelihood`: a caption's mean log-likelihood given its image, minus given a
    blank image, under the captioner (the reference VLM that exists before pretraining)."""

    enabled: bool = True
    max_caption_tokens: int = Field(96, gt=0)
    batch_size: int = neutral(64, gt=0)


class RangeRule(StrictModel):
    """Keep a caption when the signal lies in [min, max]; a missing value fails the rule."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


class TopFractionRule(StrictModel):
    """DataComp's rule: keep the top `keep` fraction of each source by `signal`."""

    signal: str = "clip_score"
    keep: float = Field(0.3, gt=0, le=1)


class FilterParams(StrictModel):
    """`quality.filter`: the rules; statistics are computed first, so these may change
    without recomputing anything (`kedro run --pipelines=quality --from-nodes=filter_captions`)."""

    enabled: bool = True
    thresholds: dict[str, RangeRule] = Field(default_factory=dict)
    top_fraction: TopFractionRule | None = None
    # SAIL-Caption2: a judge score below this drops the caption; null turns the rule off.
    judge_min_score: int | None = Field(3, ge=1, le=5)

    @model_validator(mode="after")
    def _known_signals(self) -> FilterParams:
        named = [*self.thresholds, *([self.top_fraction.signal] if self.top_fraction else [])]
        unknown = [name for name in named if name not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; signals: {', '.join(SIGNALS)}")
        return self


class QualityParams(StrictModel):
    """`quality`: signals per (id, caption source), the statistics report, and the filter."""

    sources: list[CaptionSource] = Field(default_factory=lambda: ["alt_text", "recaption",
                                                                  "reference"])
    extra_sources: list[ExtraCaptionSource] = Field(default_factory=list)
    max_caption_chars: int = Field(10_000, gt=0)
    clip: ClipParams = Field(default_factory=ClipParams)
    likelihood: LikelihoodParams = Field(default_factory=LikelihoodParams)
    judge: JudgeParams = Field(default_factory=JudgeParams)
    filter: FilterParams = Field(default_factory=FilterParams)
    executor: ExecutorParams = Field(default_factory=ExecutorParams)

    @model_validator(mode="after")
    def _known_sources(self) -> QualityParams:
        names = set(BUILT_IN_SOURCES) | {s.name for s in self.extra_sources}
        unknown = [s for s in self.sources if s not in names]
        if unknown:
            raise ValueError(f"quality.sources: unknown caption source(s) {unknown}; known: "
                             f"{sorted(names)} (add your own under extra_sources)")
        problems = self._unused_extra_sources()
        if problems:
            raise ValueError("\n  ".join(problems))
        # A rule on a signal that is not computed would reject every caption.
        off = {name for name, group in (("loglik_image", self.likelihood),
                                         ("image_gain", self.likelihood),
                                         ("judge_vir", self.judge), ("judge_ita", self.judge))
               if not group.enabled}
        named = set(self.filter.thresholds) | (
            {self.filter.top_fraction.signal} if self.filter.top_fraction else set())
        if named & off:
            raise ValueError(f"quality.filter uses {sorted(named & off)}, whose signal group "
                             f"is turned off (quality.likelihood / quality.judge enabled: false)")
        if self.filter.judge_min_score is not None and not self.judge.enabled:
            raise ValueError("quality.filter.judge_min_score needs quality.judge.enabled: true "
                             "(or set judge_min_score: null)")
        return self

    def _unused_extra_sources(self) -> list[str]:
        """An extra source that no node scores: the quality node reads only the names in
        `sources`, and a second source of one name replaces the first (a built-in one too),
        so each of these would be read, or not, and silently left out of every table."""
        problems, seen = [], set()
        for index, extra in enumerate(self.extra_sources):
            key = f"quality.extra_sources[{index}] ({extra.name!r})"
            if extra.name in BUILT_IN_SOURCES or extra.name in seen:
                owner = "a built-in source" if extra.name in BUILT_IN_SOURCES else \
                    "an earlier extra source"
                problems.append(f"{key}: the name {extra.name!r} is taken by {owner}, so one "
                                f"of the two would be silently dropped; give it another name")
            elif extra.name not in self.sources:
                problems.append(f"{key}: declared but not in quality.sources, so no caption "
                                f"of it would be scored or filtered; add it to quality.sources "
                                f"or remove it")
            seen.add(extra.name)
        return problems
