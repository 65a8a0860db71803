"""One sweep point as a chain: pretraining -> evaluation -> fixed SFT -> evaluation.

A point is (chain, data, seed): its pairs split into the pretraining stages' tables, the
stages with the sweep's settings, its seed. The engine runs it and stores it by the chain's
identity (`engine.chain.chain_identity`), so a point whose identity is in the store is
loaded, not retrained: extending a grid trains only the new points, and re-running a sweep
takes seconds. No Kedro here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline import identity
from sail_pipeline.engine.chain import (
    CHAIN_MODULE,
    Backbones,
    Chain,
    Evaluation,
    Step,
    Table,
    prefix_identities,
)
from sail_pipeline.engine.prefix import shared_prefixes
from sail_pipeline.engine.store import run_stored
from sail_pipeline.experiments.scaling.plan import Point
from sail_pipeline.experiments.scaling.pool import point_pairs
from sail_pipeline.recipe_data import caption_table
from sail_pipeline.schema import (
    SCALING_VARIANTS,
    RuntimeParams,
    ScalingParams,
    result_settings,
)

_SFT_STAGE = "knowledge"


@dataclass(frozen=True)
class SharedInputs:
    """What every point of a sweep starts from: backbones, tokenizer, and shared tables."""

    tokenizer: str
    llm: str
    vision: str
    benchmark: str
    alignment_eval: str
    advance_eval: str
    sft_train: str
    sft_eval: str

    def resolved(self) -> SharedInputs:
        """The same inputs as absolute paths: what a point run elsewhere (a Ray worker, in
        another folder) can open."""
        return SharedInputs(**{f.name: str(Path(getattr(self, f.name)).resolve())
                               for f in fields(self)})


def point_settings(point: Point, params: ScalingParams, preset: str) -> dict[str, Any]:
    """Everything but the data that decides a point's result (what a stale result differs in)."""
    variant = SCALING_VARIANTS[point.variant]
    largest = {"largest_n": max(params.sizes)} if variant.steps_of_largest else {}
    return {
        "variant": {k: v for k, v in asdict(variant).items() if k != "description"},
        "n": point.n, "seed": point.seed, "preset": preset, "sft_samples": params.sft_samples,
        **largest,
        **{name: result_settings(getattr(params, name))
           for name in ("alignment", "advance", "sft", "after_pretrain", "after_sft")},
        "code": identity.code_digest([CHAIN_MODULE, __name__]),
    }


def settings_digest(point: Point, params: ScalingParams, preset: str) -> str:
    return identity.payload_digest(point_settings(point, params, preset))


def _stage_tables(point: Point, pairs: pd.DataFrame, images: pd.Series) -> dict[str, Table]:
    """The point's pretraining tables: all pairs for Alignment alone; else disjoint halves
    (even positions Alignment, odd Advance), which keeps them nested across N."""
    stages = SCALING_VARIANTS[point.variant].stages
    scenes = pairs.assign(image=images.loc[pairs["id"]].to_numpy())
    parts = ({stages[0]: scenes} if len(stages) == 1
             else {stages[0]: scenes.iloc[0::2], stages[1]: scenes.iloc[1::2]})
    return {stage: Table(rows=caption_table(part.reset_index(drop=True), "caption",
                                            point.seed + offset))
            for offset, (stage, part) in enumerate(parts.items())}


def point_chain(point: Point, pairs: pd.DataFrame, images: pd.Series, params: ScalingParams,
                shared: SharedInputs, preset: str) -> Chain:
    """The point's chain: its pretraining stages on its pairs, evaluated, then the fixed SFT,
    evaluated."""
    variant = SCALING_VARIANTS[point.variant]
    tables = _stage_tables(point, pairs, images)
    steps = []
    for stage in variant.stages:
        settings = getattr(params, stage)
        if variant.recipe_modules:
            settings = settings.model_copy(update={"trainable": None})
        if variant.steps_of_largest:
            settings = settings.model_copy(
                update={"epochs": settings.epochs * max(params.sizes) / point.n})
        eval_data = shared.alignment_eval if stage == "alignment" else shared.advance_eval
        steps.append(Step(stage, settings, tables[stage], Table(path=eval_data)))
    steps.append(Step(_SFT_STAGE, params.sft, Table(path=shared.sft_train),
                      Table(path=shared.sft_eval), name="sft"))
    return Chain(Backbones(preset, shared.tokenizer, shared.llm, shared.vision), steps,
                 point.seed, evaluations=(
                     Evaluation(len(steps) - 2, "pretrain", shared.benchmark,
                                params.after_pretrain),
                     Evaluation(len(steps) - 1, "sft", shared.benchmark, params.after_sft)))


def point_fields(point: Point, params: ScalingParams, preset: str) -> dict[str, Any]:
    """What tells this point from the others in its result (not the chain's outcome)."""
    variant = SCALING_VARIANTS[point.variant]
    return {"settings_digest": settings_digest(point, params, preset),
            "namespace": point.namespace, "variant": point.variant, "n": point.n,
            "seed": point.seed, "caption_source": variant.captions,
            "filtered": variant.filtered, "expansion": variant.expansion,
            "stages": list(variant.stages)}


def run_point(point: Point, chain: Chain, params: ScalingParams, runtime: RuntimeParams,
              preset: str, store: str, prefixes: frozenset[str] = frozenset()
              ) -> dict[str, Any]:
    """Train and evaluate one point into `store/<identity>/`, or load it from there;
    `prefixes`: the sweep's shared prefixes (`sweep_prefixes`).

    Two points can be one chain (`noisy_expansion` at the smallest N is the recipe's point):
    the second reuses the first's scores, and its result names itself, not the first."""
    variant = SCALING_VARIANTS[point.variant]
    fields = point_fields(point, params, preset)

    def describe(outcome) -> dict[str, Any]:
        summaries = dict(zip([s.folder for s in chain.steps], outcome.summaries, strict=True))
        pretraining = [summaries[s] for s in variant.stages]
        return fields | {
            "tokens": int(sum(s.get("epoch_tokens") or 0 for s in pretraining)),
            # The sweep's other x-axes: the pairs the stages read, and their optimizer steps.
            "samples": int(sum(s.get("train_samples") or 0 for s in pretraining)),
            "steps": int(sum(s.get("steps") or 0 for s in pretraining)),
            "losses": {name: {"before": s.get("eval_loss_before"),
                              "after": s.get("eval_loss_after")}
                       for name, s in summaries.items()}}

    # What the result needs is in result.json and the final checkpoint; the training tables
    # repeat the pool's images, and the pretraining checkpoints are not loaded again.
    return run_stored(chain, runtime, store, point.label,
                      keep="all" if params.keep_intermediate else "last", describe=describe,
                      shared=prefixes) | fields


def point_job(point: Point, params: ScalingParams, shared: SharedInputs, preset: str,
              runtime: RuntimeParams, store: str, prefixes: frozenset[str] = frozenset()
              ) -> Callable[[pd.DataFrame, pd.Series], dict[str, Any]]:
    """The point as a function of the sweep's shared tables (its pool of pairs, the images
    by id): what a Ray task runs, with the paths made absolute."""
    return functools.partial(_run_job, point, params, shared.resolved(), preset, runtime,
                             str(Path(store).resolve()), prefixes)


def job_chain(point: Point, params: ScalingParams, shared: SharedInputs, preset: str,
              pool: pd.DataFrame, images: pd.Series) -> Chain:
    """The point's chain from the sweep's pool of pairs and its images by id."""
    pairs = point_pairs(pool, point.variant, point.n, point.seed, params.sizes[0])
    return point_chain(point, pairs, images, params, shared, preset)


def sweep_prefixes(points: list[Point], params: ScalingParams, shared: SharedInputs,
                   preset: str, runtime: RuntimeParams, pool: pd.DataFrame,
                   images: pd.Series) -> frozenset[str]:
    """The prefixes that more than one of the sweep's chains starts with (`engine.prefix`):
    in the default sweep, the Alignment that `frozen_llm` shares with `recaption_filtered`."""
    return shared_prefixes(
        prefix_identities(job_chain(point, params, shared, preset, pool, images), runtime)
        for point in points)


def _run_job(point: Point, params: ScalingParams, shared: SharedInputs, preset: str,
             runtime: RuntimeParams, store: str, prefixes: frozenset[str],
             pool: pd.DataFrame, images: pd.Series) -> dict[str, Any]:
    chain = job_chain(point, params, shared, preset, pool, images)
    return run_point(point, chain, params, runtime, preset, store, prefixes)
