"""Selection nodes: wiring only; the experiments are in `sail_pipeline.selection`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from sail_pipeline import dry_run, lineage
from sail_pipeline.schema import SFT_STAGES
from sail_pipeline.selection import experiments, plots, schedule
from sail_pipeline.selection.experiments import Phase
from sail_pipeline.selection.point import StartPoint, run_sft_point
from sail_pipeline.sft_data.mixture import group_of

log = logging.getLogger(__name__)

SFT_STAGE = SFT_STAGES[0]  # what a one-table point trains as (every SFT stage trains it all)


def _trainer(experiment: str, selection, start: StartPoint, runtime, store: str
             ) -> experiments.Train:
    """The experiments' `train` callback: one stored or trained point, in its MLflow run."""

    def train(label: str, table: pd.DataFrame | list[Phase], seed: int) -> dict[str, Any]:
        phases = table if isinstance(table, list) else [Phase(SFT_STAGE, selection.train, table)]
        rows = sum(len(p.table) for p in phases)
        sources = sorted({s for p in phases for s in p.table["source"].unique()})
        slug = re.sub(r"[^A-Za-z0-9_+-]+", "_", label).strip("_")
        with lineage.instance(f"selection_{experiment}"), lineage.instance(slug):
            result = run_sft_point(label, phases, seed, selection.evaluation, start, runtime,
                                   store)
            lineage.set_tags({"mlflow.runName": f"{experiment}: {label}",
                              "sail.reused": str(result["reused"]).lower(),
                              "sail.point_identity": result["identity"]})
            lineage.log_params({"experiment": experiment, "seed": seed, "rows": rows,
                                "stages": "+".join(p.stage for p in phases),
                                "sources": "+".join(sources)})
            lineage.log_metrics(result["scores"] | {"rows": float(rows)})
        log.info("%s %s: %s, average %.1f", experiment, label,
                 "reused" if result["reused"] else
                 f"trained in {result['timing']['total_seconds']:.0f}s",
                 result["scores"][experiments.AVERAGE])
        return result

    return train


def _planned(experiment: str, selection) -> str:
    seeds = len(selection.seeds)
    if experiment == "quality":
        return str(len(experiments.quality_points(selection.quality, selection.seeds)))
    if experiment == "composition":
        return f"(1 base + 1 per group) x {seeds}"
    if experiment == "schedule":
        return f"2 schedules x {len(selection.schedule.sizes)} sizes x {seeds}"
    return f"up to (1 + {len(selection.incremental.candidates)}) x {seeds}"


def _inputs(names: list[str], tables: tuple) -> dict[str, pd.DataFrame]:
    return {name: t if isinstance(t, pd.DataFrame) else pd.read_parquet(t)
            for name, t in zip(names, tables, strict=True)}


def experiment_node(experiment: str, names: list[str]) -> Callable[..., dict[str, Any]]:
    """The node function of one experiment; its trailing inputs are the candidate tables in
    `names` order."""

    def run(selection, sft, runtime, advance: dict, benchmark: str, eval_table: str,
            store: str, *tables) -> dict[str, Any]:
        if dry_run.active():
            log.info("dry run: %s would train and evaluate %s points from %s (seeds %s) into "
                     "%s", experiment, _planned(experiment, selection), advance["hf_dir"],
                     selection.seeds, store)
            return {name: (dry_run.blank_figure() if name.endswith("_plot") else
                           {} if name.endswith("_selected") else
                           "" if name.endswith("_report") else pd.DataFrame())
                    for name in OUTPUTS[experiment]}
        candidates = _inputs(names, tables)
        mixtures = {stage: getattr(sft.mixtures, stage) for stage in SFT_STAGES}
        experiments.check_sizes(selection.quality, selection.composition,
                                selection.incremental, {n: len(t) for n, t in candidates.items()},
                                selection.schedule if experiment == "schedule" else None,
                                mixtures)
        start = StartPoint(advance["hf_dir"], benchmark, eval_table)
        train = _trainer(experiment, selection, start, runtime, store)
        groups = {n: group_of(n, {k: v.group for k, v in sft.candidates.items()}) for n in names}
        if experiment == "quality":
            points = experiments.run_quality(selection.quality, selection.seeds, candidates,
                                             train)
            stats, taus = experiments.quality_ranking(points)
            lineage.log_metrics({f"selection/quality/tau_{a}_{b}": float(taus.loc[a, b])
                                 for a in taus.index for b in taus.columns if a < b})
            return {"selection_quality_points": points, "selection_quality_ranking": stats,
                    "selection_quality_tau": taus.reset_index(),
                    "selection_quality_plot": plots.quality_figure(stats, taus)}
        if experiment == "composition":
            points = experiments.run_composition(selection.composition, selection.seeds,
                                                 candidates, groups, train)
            effects = experiments.composition_effects(points)
            lineage.log_metrics({f"selection/composition/{r.variant}": r.delta_mean
                                 for r in effects.itertuples()})
            return {"selection_composition_points": points,
                    "selection_composition_effects": effects,
                    "selection_composition_plot": plots.composition_figure(effects)}
        if experiment == "schedule":
            # Each row seen once, whatever the stage's budget in `sft`: the size is the data.
            stage_train = {stage: getattr(sft, stage).model_copy(
                update={"steps": None, "tokens": None, "epochs": 1.0}) for stage in SFT_STAGES}
            points = experiments.run_schedule(selection.schedule, selection.seeds, mixtures,
                                              stage_train, candidates, train)
            fits, comparisons, report = schedule.analyse(points)
            average = next(c for c in comparisons if c["metric"] == experiments.AVERAGE)
            lineage.log_metrics({f"selection/schedule/{key}": float(average[key])
                                 for key in ("mean_diff", "slope_diff", "curvature_diff")})
            return {"selection_schedule_points": points, "selection_schedule_fits": fits,
                    "selection_schedule_report": report,
                    "selection_schedule_plot": schedule.figure(points, fits)}
        points, trajectory, selected, threshold = experiments.run_incremental(
            selection.incremental, selection.seeds, candidates, train)
        log.info("Individual Select kept %s (threshold %.2f)", selected or "nothing", threshold)
        lineage.log_metrics({"selection/incremental/threshold": threshold,
                             "selection/incremental/kept": float(len(selected))})
        return {"selection_incremental_points": points,
                "selection_incremental_trajectory": trajectory,
                "selection_incremental_selected": {"selected": selected,
                                                   "threshold": threshold},
                "selection_incremental_plot": plots.incremental_figure(trajectory, threshold)}

    run.__name__ = run.__qualname__ = f"selection_{experiment}"
    run.__doc__ = f"SAIL-VL's {experiment} evaluation of the candidate SFT sets."
    return run


OUTPUTS = {
    "quality": ["selection_quality_points", "selection_quality_ranking",
                "selection_quality_tau", "selection_quality_plot"],
    "composition": ["selection_composition_points", "selection_composition_effects",
                    "selection_composition_plot"],
    "incremental": ["selection_incremental_points", "selection_incremental_trajectory",
                    "selection_incremental_selected", "selection_incremental_plot"],
    "schedule": ["selection_schedule_points", "selection_schedule_fits",
                 "selection_schedule_report", "selection_schedule_plot"],
}
