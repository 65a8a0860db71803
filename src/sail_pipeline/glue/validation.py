"""The run's parameters, validated once when it starts: schema, then the registries.

The schema (`sail_pipeline.schema`) checks every key and value it can without importing the
library. Names that point into a registry (presets, evaluation tasks, real benchmarks,
DeepSpeed files, image formats), whether the world can be drawn, the user's own files, and a
candidate set that nothing draws from are checked here, before any node runs, and every
problem is reported with its dotted key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sail_pipeline.schema import (
    InvalidParameters,
    ProjectParams,
    format_problems,
    training_runs,
    validate_parameters,
)
from sail_pipeline.schema.quality import MIN_CLIP_PAIRS


def _trees(project: ProjectParams) -> Iterator[tuple[str, ProjectParams]]:
    yield "", project
    for name, variant in project.variants.items():
        yield f"variants.{name}.", variant


def _candidate_problems(prefix: str, tree: ProjectParams) -> list[str]:
    """A user's candidate set must exist and say its format before any node runs."""
    problems = []
    for name, spec in tree.sft.candidates.items():
        key = f"{prefix}sft.candidates.{name}"
        if not Path(spec.path).is_file():
            problems.append(f"{key}.path: {spec.path} does not exist")
        try:
            spec.resolved_format()
        except ValueError as error:
            problems.append(f"{key}.format: {error}")
        if spec.image_folder is not None and not Path(spec.image_folder).is_dir():
            problems.append(f"{key}.image_folder: {spec.image_folder} is not a folder")
    return problems


def _file_problems(tree: ProjectParams) -> list[str]:
    """The quality pipeline's inputs of the user's own, there before any node runs (not an
    hour later, after recaptioning)."""
    if tree.quality is None:
        return []
    problems = [f"quality.extra_sources[{index}] ({extra.name!r}).path: {extra.path} does not "
                f"exist; give the Parquet file of that caption column"
                for index, extra in enumerate(tree.quality.extra_sources)
                if not Path(extra.path).is_file()]
    clip = tree.quality.clip
    if clip.source == "path" and not (Path(str(clip.path)) / "config.json").is_file():
        problems.append(f"quality.clip.path: {clip.path} is not a Hugging Face CLIPModel "
                        f"directory (no config.json); give a local one saved with its tokenizer "
                        f"and image processor, or set quality.clip.source: train")
    return problems


def unused_candidate_problems(project: ProjectParams) -> list[str]:
    """Each set of the user's own that no mixture or selection experiment draws from: it
    would be validated, then left out of every table, and the run would succeed without it.
    Said with the other problems of the tree (its file missing, say), not instead of them;
    variants share the candidate sets, so the top-level tree decides."""
    if project.sft is None:
        return []
    drawn = {*project.sft.candidate_names(),
             *(project.selection.drawn_candidates() if project.selection is not None else ())}
    return [f"sft.candidates.{name}: no SFT mixture or selection experiment draws from it; "
            f"name it in an sft.mixtures.<stage>.sources (or in selection.quality.candidates "
            f"or selection.incremental.candidates, with that experiment in "
            f"selection.experiments), or remove it"
            for name in project.sft.candidates if name not in drawn]


def registry_problems(project: ProjectParams, deepspeed_dir: str | Path | None) -> list[str]:
    """Each name the registries do not know, as `dotted.key: why`."""
    from sail_pipeline.evaluation.real_suite import select
    from sail_pipeline.evaluation.tasks import TASK_TYPES
    from sail_pipeline.modeling.preset_specs import PRESETS
    from sail_pipeline.world.config import check_feasible

    problems = []
    for prefix, tree in _trees(project):
        if tree.pretrain is not None and tree.pretrain.preset not in PRESETS:
            problems.append(f"{prefix}pretrain.preset: unknown preset "
                            f"{tree.pretrain.preset!r}; known: {sorted(PRESETS)}")
        evaluations = {f"{prefix}evaluation": tree.evaluation}
        if tree.scaling is not None:
            evaluations |= {f"{prefix}scaling.after_pretrain": tree.scaling.after_pretrain,
                            f"{prefix}scaling.after_sft": tree.scaling.after_sft}
        if tree.selection is not None:
            evaluations[f"{prefix}selection.evaluation"] = tree.selection.evaluation
            problems += _experiment_problems(prefix, tree.selection.experiments)
        for key, evaluation in evaluations.items():
            unknown = sorted(set(evaluation.question_types or ()) - set(TASK_TYPES))
            if unknown:
                problems.append(f"{key}.question_types: unknown {unknown}; "
                                f"known: {list(TASK_TYPES)}")
        try:
            select(tree.evaluation.real_benchmarks)
        except ValueError as error:
            problems.append(f"{prefix}evaluation.real_benchmarks: {error}")
        try:
            check_feasible(tree.data.world)
        except ValueError as error:
            problems.append(f"{prefix}data.world: {error}")
        if tree.sft is not None:
            problems += _candidate_problems(prefix, tree)
        if tree.curation is not None:
            problems += _format_problems(tree.curation.settings.allowed_formats or [],
                                         f"{prefix}curation.settings.allowed_formats")
    # Once: a variant that overrides `quality` is refused (its instance does not read it).
    problems += _file_problems(project)
    if deepspeed_dir is not None:
        from sail_pipeline.training.config import load_deepspeed_config

        for key, run in training_runs(project).items():
            try:
                load_deepspeed_config(run.deepspeed, deepspeed_dir)
            except (FileNotFoundError, ValueError) as error:
                problems.append(f"{key}.deepspeed: {error}")
    return problems


def _experiment_problems(prefix: str, names: list[str]) -> list[str]:
    from sail_pipeline.experiments.selection.registry import SELECTION_EXPERIMENTS

    unknown = [name for name in names if name not in SELECTION_EXPERIMENTS]
    repeated = sorted({name for name in names if names.count(name) > 1})
    return ([f"{prefix}selection.experiments: unknown {unknown}; known: "
             f"{list(SELECTION_EXPERIMENTS)}"] if unknown else []) + \
        ([f"{prefix}selection.experiments: {repeated} named twice"] if repeated else [])


def _format_problems(formats: list[str], key: str) -> list[str]:
    from PIL import Image

    Image.init()
    unknown = [f for f in formats if f not in Image.OPEN]
    return [f"{key}: Pillow cannot open {unknown}; known: {sorted(Image.OPEN)}"] if unknown else []


def _has_world(tree: ProjectParams) -> bool:
    return tree.curation is not None and any(s.kind == "world" for s in tree.curation.sources)


_ORACLE_FIX = ("use `backend: api` with `api: {base_url: ..., model: ...}` (an OpenAI-compatible "
               "server), or keep `{kind: world, name: world}` in curation.sources")


# The node that needs each backend: the check applies only when that node is going to run
# (`kedro run --pipelines=curation` on your own photos needs no captioner).
_ORACLE_NODES = {"captioning.reference.backend": "reference_captions",
                 "captioning.recaption.backend": "recaption_pool",
                 "quality.judge.backend": "quality_signals"}


def combination_problems(tree: ProjectParams, nodes: set[str]) -> list[str]:
    """Settings each valid alone that cannot work together in the nodes about to run (base
    names), with the fix: found before the first node, not minutes later (or as a DeepSpeed
    error on an empty table)."""
    return _oracle_problems(tree, nodes) + _clip_pair_problems(tree, nodes)


def _clip_pair_problems(tree: ProjectParams, nodes: set[str]) -> list[str]:
    # The stand-in CLIP trains on the reference captions: a reference set smaller than it
    # needs would stop the quality pipeline at its second node, after captioning.
    if "train_quality_clip" not in nodes or tree.quality is None or tree.captioning is None \
            or tree.quality.clip.source != "train":
        return []
    size = tree.captioning.reference.size
    if size is None or size >= MIN_CLIP_PAIRS:
        return []
    return [f"captioning.reference.size: the stand-in CLIP (quality.clip.source: train) trains "
            f"on the reference captions and needs at least {MIN_CLIP_PAIRS}, and the reference "
            f"set has {size}; raise captioning.reference.size to {MIN_CLIP_PAIRS} or more, or "
            f"give your own CLIP (quality.clip: {{source: path, path: <a CLIPModel directory>}})"]


def _oracle_problems(tree: ProjectParams, nodes: set[str]) -> list[str]:
    if tree.curation is None or _has_world(tree):
        return []
    backends = {}
    if tree.captioning is not None:
        backends["captioning.reference.backend"] = tree.captioning.reference.backend
        backends["captioning.recaption.backend"] = tree.captioning.recaption.backend
    if tree.quality is not None:
        backends["quality.judge.backend"] = tree.quality.judge.backend
    return [f"{key}: `oracle` reads the embedded world's ground truth, and curation.sources "
            f"has no `world` source, so every one of your images would fail; {_ORACLE_FIX}"
            for key, backend in backends.items()
            if backend == "oracle" and _ORACLE_NODES[key] in nodes]


def advisories(tree: ProjectParams) -> list[str]:
    """Settings that work but that the user probably did not mean: said at start."""
    notes = []
    if tree.curation is not None and any(s.kind != "world" for s in tree.curation.sources) \
            and tree.curation.settings.near_duplicate_max_distance is None:
        notes.append("curation.settings.near_duplicate_max_distance is null (the embedded "
                     "default, set for the world's scenes): near-duplicate detection is off for "
                     "your own sources too. Set it (6 suits photos) in "
                     "parameters_curation.yml of the environment you run (conf/local without "
                     "--env, conf/<env> with one) to turn it on.")
    return notes


def validate_project(params: dict[str, Any], deepspeed_dir: str | Path | None = None
                     ) -> ProjectParams:
    """The whole tree, checked against the schema and the registries; raises
    `InvalidParameters` listing every bad key."""
    project = validate_parameters(params)
    problems = registry_problems(project, deepspeed_dir) + unused_candidate_problems(project)
    if problems:
        raise InvalidParameters(format_problems(problems))
    return project
