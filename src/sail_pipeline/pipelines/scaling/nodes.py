"""Scaling nodes: wiring only; the work is in `sail_pipeline.experiments.scaling`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.curation.sources import world_values
from sail_pipeline.engine.chain import chain_identity
from sail_pipeline.engine.executor import Job, run_jobs
from sail_pipeline.engine.progress import PointProgress
from sail_pipeline.experiments import chance
from sail_pipeline.experiments.scaling import report
from sail_pipeline.experiments.scaling.plan import Point, plan_points
from sail_pipeline.experiments.scaling.point import (
    SharedInputs,
    job_chain,
    point_job,
    settings_digest,
    sweep_prefixes,
)
from sail_pipeline.experiments.scaling.pool import build_pools, check_sizes
from sail_pipeline.experiments.selection import schedule
from sail_pipeline.quality.filter import decide
from sail_pipeline.schema import (
    CurationParams,
    PointExecutorParams,
    RuntimeParams,
    ScalingParams,
    StatisticsParams,
)
from sail_pipeline.schema.quality import FilterParams

log = logging.getLogger(__name__)


def scaling_pools(candidates: pd.DataFrame, signals: pd.DataFrame, manifest: pd.DataFrame,
                  scenes: pd.DataFrame | None, params: ScalingParams, quality_filter: FilterParams,
                  curation: CurationParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every variant's pool of pairs; fails, naming `scaling.sizes`, when one is too small."""
    rules = params.filter or quality_filter
    decisions, _, _ = decide(signals, rules)
    pairs, accounting = build_pools(
        candidates[candidates["id"].isin(set(manifest["id"]))], decisions,
        world_values(curation.sources, scenes, "reference_caption"), params)
    check_sizes(accounting, params)
    return pairs, accounting


def sft_table(knowledge_train: str, rows: int) -> pd.DataFrame:
    """The fixed SFT's table: the first `rows` rows of SFT-Knowledge's (shuffled) table."""
    return pd.read_parquet(knowledge_train).head(rows)


def _shared(tokenizer: str, llm: dict, vision: dict, benchmark: str, alignment_eval: str,
            advance_eval: str, sft_train: str, sft_eval: str) -> SharedInputs:
    return SharedInputs(tokenizer, llm["hf_dir"], vision["hf_dir"], benchmark, alignment_eval,
                        advance_eval, sft_train, sft_eval)


def prefixes_node(points: list[Point]) -> Callable[..., list[str]]:
    """The node that names the prefixes several of the sweep's chains share (sorted)."""

    def scaling_prefixes(pool: pd.DataFrame, manifest: pd.DataFrame, tokenizer: str,
                         llm: dict, vision: dict, benchmark: str, alignment_eval: str,
                         advance_eval: str, sft_train: str, sft_eval: str,
                         params: ScalingParams, preset: str, runtime: RuntimeParams
                         ) -> list[str]:
        shared = _shared(tokenizer, llm, vision, benchmark, alignment_eval, advance_eval,
                         sft_train, sft_eval)
        found = sweep_prefixes(points, params, shared, preset, runtime, pool,
                               manifest.set_index("id")["image"])
        log.info("%d of the sweep's prefixes are shared by more than one point; each "
                 "trains once", len(found))
        return sorted(found)

    scaling_prefixes.__doc__ = (f"The prefixes that more than one of the sweep's {len(points)} "
                                "chains start with.")
    return scaling_prefixes


def point_node(point: Point) -> Callable[..., dict[str, Any]]:
    """The node function of one point, named `run_point` in the point's namespace."""

    def run(pool: pd.DataFrame, manifest: pd.DataFrame, tokenizer: str, llm: dict,
            vision: dict, benchmark: str, alignment_eval: str, advance_eval: str,
            sft_train: str, sft_eval: str, params: ScalingParams, preset: str,
            runtime: RuntimeParams, store: str, prefixes: list[str] | None
            ) -> dict[str, Any]:
        shared = _shared(tokenizer, llm, vision, benchmark, alignment_eval, advance_eval,
                         sft_train, sft_eval)
        images = manifest.set_index("id")["image"]
        job = Job(point.label, point_job(point, params, shared, preset, runtime, store,
                                         frozenset(prefixes or ())))
        [(_, outcome)] = run_jobs([job], (pool, images), PointExecutorParams())
        return _settle(point, outcome, lambda: chain_identity(
            job_chain(point, params, shared, preset, pool, images), runtime))

    run.__name__ = run.__qualname__ = "run_point"
    run.__doc__ = f"Sweep point {point.label}: pretrain, evaluate, fixed SFT, evaluate."
    return run


def points_node(points: list[Point]) -> Callable[..., tuple[dict[str, Any], ...]]:
    """One node for every point, each a Ray task (`runtime.points.kind: ray`); its outputs
    are the points' results, the same datasets the per-point nodes write."""

    def run_points(pool: pd.DataFrame, manifest: pd.DataFrame, tokenizer: str, llm: dict,
                   vision: dict, benchmark: str, alignment_eval: str, advance_eval: str,
                   sft_train: str, sft_eval: str, params: ScalingParams, preset: str,
                   runtime: RuntimeParams, store: str, prefixes: list[str] | None
                   ) -> tuple[dict[str, Any], ...]:
        shared = _shared(tokenizer, llm, vision, benchmark, alignment_eval, advance_eval,
                         sft_train, sft_eval)
        images = manifest.set_index("id")["image"]
        target = lineage.tracking_target()
        progress = PointProgress("scaling", len(points), run_id=target[1] if target else None)
        uri = None
        if target is not None:
            import mlflow

            uri = mlflow.get_tracking_uri()
        jobs = []
        for point in points:
            tracking = None
            if target is not None:  # the point's run, made here once, whatever runs it
                tracking = (uri, target[0], lineage.instance_run(
                    point.namespace, target[1], target[0], lineage.git_state()))
            jobs.append(Job(point.label, point_job(point, params, shared, preset, runtime,
                                                   store, frozenset(prefixes or ())),
                            tracking, point.namespace, point))
            progress.start(point.label)
        # A dry run prints each stage's command; it runs here, one point after another.
        settings = PointExecutorParams() if runtime.launcher.dry_run else runtime.points
        results: dict[Point, dict[str, Any]] = {}
        for job, outcome in run_jobs(jobs, (pool, images), settings):
            point = job.key
            with lineage.instance(point.namespace):
                results[point] = _settle(point, outcome, lambda point=point: chain_identity(
                    job_chain(point, params, shared, preset, pool, images), runtime))
            progress.record(point.label, results[point])
        return tuple(results[point] for point in points)

    run_points.__doc__ = f"The sweep's {len(points)} points, each a Ray task."
    return run_points


def _settle(point: Point, outcome: dict[str, Any] | BaseException,
            identity: Callable[[], str]) -> dict[str, Any]:
    """The point's result, tracked and logged; a failed point's record with its reason."""
    if isinstance(outcome, BaseException):
        # One failed point must not stop a sweep of a hundred: it is recorded, the fit
        # names it with its reason, and the next run trains it again.
        log.error("%s failed: %s", point.label, outcome)
        return {"failed": True, "namespace": point.namespace, "identity": identity(),
                "error": str(outcome)[-2000:]}
    _track(point, outcome)
    log.info("%s: %s | %s", point.label, "reused" if outcome["reused"] else
             f"trained in {outcome['timing']['total_seconds']:.0f}s",
             " ".join(f"{k}={v:.3g}" for k, v in outcome["scores"].items()
                      if k.endswith(("average", "caption"))))
    return outcome


def _track(point: Point, result: dict[str, Any]) -> None:
    """The point's MLflow child run: named for the point, N as metrics for the UI's charts."""
    lineage.set_tags({"mlflow.runName": point.label, "sail.reused": str(result["reused"]).lower(),
                      "sail.point_identity": result["identity"]})
    lineage.log_params({"variant": point.variant, "caption_source": result["caption_source"],
                        "filtered": result["filtered"], "expansion": result["expansion"],
                        "stages": "+".join(result["stages"]), "seed": point.seed,
                        "data_size_samples": point.n, "data_size_tokens": result["tokens"]})
    lineage.log_metrics(result["scores"] | {
        "data_size": float(point.n), "log10_data_size": math.log10(point.n),
        "data_tokens": float(result["tokens"]),
        **{f"time/{k}": v for k, v in result["timing"].items()}})


def fit_node(points: list[Point]) -> Callable[..., tuple]:
    """The fit over `points`: results that are missing or stale are named, not guessed."""

    def fit_scaling(params: ScalingParams, statistics: StatisticsParams, preset: str,
                    benchmark: str, accounting: pd.DataFrame | None,
                    schedule_points: pd.DataFrame | None, *results: dict[str, Any] | None
                    ) -> tuple:
        finished, missing = [], []
        for point, result in zip(points, results, strict=True):
            if not isinstance(result, dict):  # not run (or a dry run's stand-in)
                missing.append(f"{point.namespace} (not run)")
            elif result.get("failed"):
                reason = result["error"].strip().splitlines()[-1][:200] if result["error"] else ""
                missing.append(f"{point.namespace} (failed: {reason})")
            elif result.get("settings_digest") != settings_digest(point, params, preset):
                missing.append(f"{point.namespace} (stale: settings or code changed)")
            else:
                finished.append(result)
        if missing:
            log.warning("scaling fit: %d of %d points missing: %s", len(missing), len(points),
                        ", ".join(missing))
        levels = chance.levels_of(benchmark)  # read once: the sweep's and the schedule's
        return report.build(finished, missing, statistics, accounting,
                            schedule.report_section(schedule_points, statistics, levels),
                            chance_levels=levels)

    fit_scaling.__doc__ = "Fit score = a + b ln N per variant and metric; plots; the report."
    return fit_scaling


__all__ = ["fit_node", "plan_points", "point_node", "points_node", "prefixes_node",
           "scaling_pools"]
