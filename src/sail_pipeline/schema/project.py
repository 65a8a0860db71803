"""The whole parameter tree, validated once when a run starts.

`validate_parameters` checks everything that needs no registry; `sail_pipeline.validation`
adds the checks against the registries (presets, tasks, DeepSpeed files, what Pillow opens)
and is what the Kedro context calls.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from sail_pipeline.errors import UserError
from sail_pipeline.schema.base import StrictModel
from sail_pipeline.schema.captioning import CaptioningParams
from sail_pipeline.schema.curation import CurationParams
from sail_pipeline.schema.data import DataParams
from sail_pipeline.schema.evaluation import EvaluationParams
from sail_pipeline.schema.quality import QualityParams
from sail_pipeline.schema.runtime import RuntimeParams
from sail_pipeline.schema.scaling import ScalingParams
from sail_pipeline.schema.selection import SelectionParams
from sail_pipeline.schema.sft import SftParams
from sail_pipeline.schema.stages import BACKBONES, PRETRAIN_STAGES, SFT_STAGES
from sail_pipeline.schema.training import BackboneParams, TrainParams


class _PretrainBase(StrictModel):
    # A name of sail_pipeline.modeling.presets, checked against it when the run starts.
    preset: str = "tiny"
    # The captions Pretrain-Alignment and -Advance train on, from the quality-filtered pool:
    # recaption (the SAIL recipe: the captioner's), alt_text, reference, or an extra source.
    caption_source: str = "recaption"


# One field per stage of the registry's groups: adding a stage there adds its key here.
PretrainParams = create_model(
    "PretrainParams", __base__=_PretrainBase, __module__=__name__,
    **{name: (BackboneParams, ...) for name in BACKBONES},
    **{name: (TrainParams, ...) for name in PRETRAIN_STAGES},
)
PretrainParams.__doc__ = "`pretrain`: the backbones, Pretrain-Alignment and Pretrain-Advance."

_VARIANT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ProjectParams(StrictModel):
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    data: DataParams = Field(default_factory=DataParams)
    pretrain: PretrainParams | None = None  # type: ignore[valid-type]
    sft: SftParams | None = None  # type: ignore[valid-type]
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    curation: CurationParams | None = None
    captioning: CaptioningParams | None = None
    quality: QualityParams | None = None
    # The data-size sweep of `kedro run --pipelines=scaling` (parameters_scaling.yml).
    scaling: ScalingParams | None = None
    # The SFT data experiments of `kedro run --pipelines=selection` (parameters_selection.yml).
    selection: SelectionParams | None = None
    # Named instances of the recipe, each the whole tree with its overrides merged in
    # (`variants: {low_lr: {sft: {knowledge: {lr: 5e-4}}}}`); `kedro run --pipelines=variants`
    # trains and evaluates each under its own namespace.
    variants: dict[str, ProjectParams] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _merge_variant_overrides(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not raw.get("variants"):
            return raw
        base = {k: v for k, v in raw.items() if k != "variants"}
        merged = {}
        if not isinstance(raw["variants"], dict):
            raise ValueError(f"variants: give a mapping of name -> overrides (got "
                             f"{raw['variants']!r})")
        for name, overrides in raw["variants"].items():
            if overrides is not None and not isinstance(overrides, dict):
                raise ValueError(f"variants.{name}: give a mapping of overrides, e.g. "
                                 f"{{sft: {{knowledge: {{lr: 5.0e-4}}}}}} (got {overrides!r})")
            merged[name] = deep_merge(base, overrides or {})
        return base | {"variants": merged}

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, ProjectParams]) -> dict[str, ProjectParams]:
        for name, tree in variants.items():
            if not _VARIANT_NAME.match(name) or name in cls.model_fields:
                raise ValueError(f"variant name {name!r} must be lower_snake_case and not a "
                                 f"top-level key ({sorted(cls.model_fields)})")
            if tree.variants:
                raise ValueError(f"variant {name!r} may not declare variants of its own")
        return variants

    @model_validator(mode="after")
    def _caption_source_in_pool(self) -> ProjectParams:
        if self.pretrain is None:
            return self
        if self.quality is not None:
            names = ["alt_text", "recaption", "reference",
                     *(s.name for s in self.quality.extra_sources)]
            if self.pretrain.caption_source not in names:
                raise ValueError(f"pretrain.caption_source {self.pretrain.caption_source!r} is "
                                 f"not a caption source; known: {names}")
            if self.pretrain.caption_source not in self.quality.sources:
                raise ValueError(f"pretrain.caption_source {self.pretrain.caption_source!r} "
                                 f"is not scored: add it to quality.sources")
        for name, tree in self.variants.items():
            # The pool tables are shared by every instance of the recipe.
            if tree.pretrain is not None and \
                    tree.pretrain.caption_source != self.pretrain.caption_source:
                raise ValueError(f"variant {name!r}: pretrain.caption_source cannot differ per "
                                 f"variant (the caption tables are shared)")
        return self


    @model_validator(mode="after")
    def _selection_candidates_known(self) -> ProjectParams:
        if self.selection is None:
            return self
        from sail_pipeline.schema.sft import CANDIDATES

        known = [*CANDIDATES, *(self.sft.candidates if self.sft is not None else {})]
        unknown = [n for n in self.selection.candidate_names() if n not in known]
        if unknown:
            raise ValueError(f"selection: unknown candidate set(s) {unknown}; known: {known} "
                             f"(your own go in sft.candidates)")
        if "schedule" in self.selection.experiments and self.sft is None:
            raise ValueError("selection.experiments: `schedule` trains the curriculum of "
                             "`sft` (its mixtures and stage settings), and there is no `sft`")
        return self

    @model_validator(mode="after")
    def _shared_sft_tables(self) -> ProjectParams:
        for name, tree in self.variants.items():
            if tree.sft is not None and self.sft is not None and (
                    tree.sft.mixtures != self.sft.mixtures
                    or tree.sft.candidates != self.sft.candidates):
                raise ValueError(f"variant {name!r}: sft.mixtures and sft.candidates cannot "
                                 f"differ per variant (the SFT tables are shared); "
                                 f"sft.schedule can")
        return self


class InvalidParameters(UserError, ValueError):
    pass


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, key by key; a non-dict override replaces the value."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def training_runs(project: ProjectParams, prefix: str = "") -> dict[str, TrainParams]:
    """Every training run the parameters describe (variants included), by its dotted key."""
    runs: dict[str, TrainParams] = {}
    if project.pretrain is not None:
        for name in BACKBONES:
            backbone = getattr(project.pretrain, name)
            if backbone.source == "train" and backbone.train is not None:
                runs[f"{prefix}pretrain.{name}.train"] = backbone.train
        runs |= {f"{prefix}pretrain.{s}": getattr(project.pretrain, s) for s in PRETRAIN_STAGES}
    if project.sft is not None:
        runs |= {f"{prefix}sft.{s}": getattr(project.sft, s) for s in SFT_STAGES}
    captioner = project.captioning.captioner if project.captioning is not None else None
    if captioner is not None and captioner.source == "train" and captioner.train is not None:
        runs[f"{prefix}captioning.captioner.train"] = captioner.train
    if project.scaling is not None:
        runs |= {f"{prefix}scaling.{s}": getattr(project.scaling, s)
                 for s in ("alignment", "advance", "sft")}
    if project.selection is not None:
        runs[f"{prefix}selection.train"] = project.selection.train
    for name, variant in project.variants.items():
        runs |= training_runs(variant, f"{prefix}variants.{name}.")
    return runs


def format_problems(problems: list[str]) -> str:
    return "invalid parameters:\n" + "\n".join(f"  {p}" for p in problems)


def validate_parameters(params: dict[str, Any]) -> ProjectParams:
    """The validated tree; the error lists every bad key by its dotted path."""
    try:
        return ProjectParams.model_validate(params)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"])
            got = f" (got {item['input']!r})" if "input" in item and not isinstance(
                item["input"], dict) else ""
            # A check across keys has no location; its message starts with the key it names.
            lines.append(f"{key}: {item['msg']}{got}" if key else
                         item["msg"].removeprefix("Value error, "))
        raise InvalidParameters(format_problems(lines)) from None
