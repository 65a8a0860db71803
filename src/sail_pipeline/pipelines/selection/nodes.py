"""Selection nodes: wiring only; the experiments are in `sail_pipeline.selection`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from sail_pipeline import dry_run, lineage
from sail_pipeline.selection import experiments, plots
from sail_pipeline.selection.point import StartPoint, run_sft_point
from sail_pipeline.sft_data.mixture import group_of

log = logging.getLogger(__name__)


def _trainer(experiment: str, selection, start: StartPoint, runtime, store: str
             ) -> experiments.Train:
    """The experiments' `train` callback: one stored or trained point, in its MLflow run."""

    def train(label: str, table: pd.DataFrame, seed: int) -> dict[str, Any]:
        slug = re.sub(r"[^A-Za-z0-9_+-]+", "_", label).strip("_")
        with lineage.instance(f"selection_{experiment}"), lineage.instance(slug):
            result = run_sft_point(label, table, seed, selection.train, selection.evaluation,
                                   start, runtime, store)
            lineage.set_tags({"mlflow.runName": f"{experiment}: {label}",
                              "sail.reused": str(result["reused"]).lower(),
                              "sail.point_identity": result["identity"]})
            lineage.log_params({"experiment": experiment, "seed": seed, "rows": len(table),
                                "sources": "+".join(sorted(table["source"].unique()))})
            lineage.log_metrics(result["scores"] | {"rows": float(len(table))})
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
                           {} if name.endswith("_selected") else pd.DataFrame())
                    for name in OUTPUTS[experiment]}
        candidates = _inputs(names, tables)
        experiments.check_sizes(selection.quality, selection.composition,
                                selection.incremental, {n: len(t) for n, t in candidates.items()})
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
}
