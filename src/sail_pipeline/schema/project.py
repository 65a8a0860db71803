"""The whole parameter tree, validated once when a run starts.

`validate_parameters` checks everything that needs no registry; `sail_pipeline.glue.validation`
adds the checks against the registries (presets, tasks, DeepSpeed files, what Pillow opens)
and is what the Kedro context calls.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from sail_pipeline.errors import UserError
from sail_pipeline.schema.base import StrictModel, resolve_inherited
from sail_pipeline.schema.captioning import CaptioningParams
from sail_pipeline.schema.curation import CurationParams
from sail_pipeline.schema.data import DataParams
from sail_pipeline.schema.evaluation import EvaluationParams
from sail_pipeline.schema.quality import BUILT_IN_SOURCES, QualityParams
from sail_pipeline.schema.runtime import RuntimeParams
from sail_pipeline.schema.scaling import ScalingParams
from sail_pipeline.schema.selection import SelectionParams
from sail_pipeline.schema.sft import ALL_IN_ONE, SftParams
from sail_pipeline.schema.stages import BACKBONES, PRETRAIN_STAGES, RECIPE, SFT_STAGES, get_stage
from sail_pipeline.schema.statistics import StatisticsParams
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
# The sections with fields that start from another section's settings (`inherited`).
_INHERITING = {"scaling": ScalingParams, "selection": SelectionParams}


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
    # How every experiment's intervals and verdicts are made (experiments.stats).
    statistics: StatisticsParams = Field(default_factory=StatisticsParams)
    # Named instances of the recipe, each the whole tree with its overrides merged in
    # (`variants: {low_lr: {sft: {knowledge: {lr: 5e-4}}}}`); `kedro run --pipelines=variants`
    # trains and evaluates each under its own namespace.
    variants: dict[str, ProjectParams] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _merge_variant_overrides(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        # The experiments' stages and evaluations start from the recipe's (`inherited`).
        resolved = raw | {name: resolve_inherited(raw, name, model)
                          for name, model in _INHERITING.items() if name in raw}
        if not raw.get("variants"):
            return resolved
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
            # A variant runs the recipe, not the experiments: their sections are the
            # top-level run's, as resolved there, plus what the variant writes in them (which
            # `variant_problems` then names as changing nothing).
            merged[name] |= {section: deep_merge(resolved[section],
                                                 (overrides or {}).get(section) or {})
                             for section in _INHERITING if isinstance(resolved.get(section), dict)}
        return resolved | {"variants": merged}

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
            names = [*BUILT_IN_SOURCES, *(s.name for s in self.quality.extra_sources)]
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

    @model_validator(mode="after")
    def _variants_change_what_they_run(self) -> ProjectParams:
        problems = variant_problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self


def recipe_reads(schedule: str) -> frozenset[str]:
    """The keys of a parameter tree that an instance of the recipe reads, derived from the
    stage registry as the recipe's nodes are (`pipelines/recipe/pipeline.py`; a test checks
    that the two agree): each stage's settings, the preset of a stage built from the
    backbones, `sft.schedule` (it decides the nodes), `runtime` and `evaluation`. Under
    `all_in_one` the one SFT stage takes the whole `sft`."""
    reads = {"runtime", "evaluation", "sft.schedule"}
    for stage in RECIPE:
        spec = get_stage(stage)
        reads.add("sft" if schedule == ALL_IN_ONE and stage in SFT_STAGES
                  else f"{spec.group}.{stage}")
        if spec.starts_from is None:
            reads.add(f"{spec.group}.preset")
    return frozenset(reads)


def _differences(base: Any, other: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two dumped trees (a list is one value)."""
    if isinstance(base, dict) and isinstance(other, dict):
        return [key for name in dict.fromkeys([*base, *other])
                for key in _differences(base.get(name), other.get(name),
                                        f"{prefix}.{name}" if prefix else str(name))]
    return [] if base == other else [prefix]


def _is_read(key: str, reads: frozenset[str]) -> bool:
    # A key inside a read section, or a whole section replaced that holds one.
    return any(key == r or key.startswith(r + ".") or r.startswith(key + ".") for r in reads)


def variant_problems(project: ProjectParams) -> list[str]:
    """Each variant that would silently do nothing: one equal to the top-level tree or to an
    earlier variant (it trains the same models again), or an override of a key its instance
    of the recipe does not read (it would run with the top-level value)."""
    if not project.variants:
        return []
    base = project.model_dump(exclude={"variants"})
    problems: list[str] = []
    seen: list[str] = []
    for name, tree in project.variants.items():
        changed = _differences(base, tree.model_dump(exclude={"variants"}))
        schedule = tree.sft.schedule if tree.sft is not None else "curriculum"
        ignored = [key for key in changed if not _is_read(key, recipe_reads(schedule))]
        if ignored:
            # The `variants` pipeline's shared inputs are made once, from the top-level tree.
            problems += [f"variants.{name}.{key}: a variant runs only the recipe's stages "
                         f"({', '.join(RECIPE)}) and evaluation, and shares the data tables, "
                         f"tokenizer and backbones with the top-level run, so this override "
                         f"changes nothing; set it at the top level, or remove it from the "
                         f"variant" for key in ignored]
        elif not changed:
            problems.append(f"variants.{name}: changes nothing (every setting equals the "
                            f"top-level parameters); override a setting of a stage, runtime "
                            f"or evaluation (e.g. {{sft: {{knowledge: {{lr: 5.0e-4}}}}}}), or "
                            f"remove it")
        else:
            twin = next((other for other in seen if project.variants[other] == tree), None)
            if twin is not None:
                problems.append(f"variants.{name}: the same settings as variants.{twin}, so it "
                                f"would train the same models again; change one, or remove it")
            seen.append(name)
    return problems


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
    """The validated tree; the error lists every bad key by its dotted path, once."""
    try:
        return ProjectParams.model_validate(params)
    except ValidationError as error:
        items = error.errors()
        problems: dict[str, str] = {}
        for item in items:
            key = ".".join(str(part) for part in item["loc"])
            got = f" (got {item['input']!r})" if "input" in item and not isinstance(
                item["input"], dict) else ""
            message = item["msg"].removeprefix("Value error, ")
            # A check across keys has no location, or the location of the model that holds
            # them: its message starts with the key it names.
            named = not key or message.startswith((f"{key}.", f"{key}["))
            if item["type"] == "extra_forbidden":
                problems[key] = f"{key}: no such key{got}{_closest_key(item['loc'])}"
            else:
                problems[key] = message if named else f"{key}: {item['msg']}{got}"
        raise InvalidParameters(format_problems(_once(problems))) from None


def _once(problems: dict[str, str]) -> list[str]:
    """Each problem once: a variant starts from the whole tree, so a bad key outside
    `variants` comes back once per variant; those repeats are left out (said once)."""
    lines, repeated = [], set()
    for key, line in problems.items():
        parts = key.split(".")
        inner = ".".join(parts[2:])
        if parts[0] == "variants" and len(parts) > 2 and inner in problems and \
                problems[inner].removeprefix(inner) == line.removeprefix(key):
            repeated.add(parts[1])
            continue
        lines.append(line)
    if repeated:
        lines.append(f"(each also in the variants {', '.join(sorted(repeated))}, which start "
                     "from the same keys)")
    return lines


def _closest_key(loc: tuple) -> str:
    """' (did you mean 'knowledge'?)' for an unknown key, from the fields where it sits."""
    import difflib
    import types
    import typing

    from pydantic import BaseModel

    def models(annotation: Any) -> list[Any]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            return [m for arg in typing.get_args(annotation) for m in models(arg)]
        return []

    def fields_at(annotation: Any, path: tuple) -> list[str]:
        if not path:
            return [name for m in models(annotation) for name in m.model_fields]
        if typing.get_origin(annotation) is dict:  # a name of the mapping, then its value
            return fields_at(typing.get_args(annotation)[1], path[1:])
        for model in models(annotation):
            if path[0] in model.model_fields:
                return fields_at(model.model_fields[path[0]].annotation, path[1:])
        return []

    close = difflib.get_close_matches(str(loc[-1]), fields_at(ProjectParams, tuple(loc[:-1])),
                                      n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
