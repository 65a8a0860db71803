"""The SFT data experiments by name: each a grid of points and an analysis (`Experiment`).

`selection.experiments` names entries of `SELECTION_EXPERIMENTS`; the selection pipeline runs
one node per name. Every experiment gets the same inputs (`SelectionInputs`: the parameters,
the candidate tables, and `make`, which turns a table into an engine point that starts from
the pretrained checkpoint), and its analysis returns its outputs by catalog name
(`selection_<name>_points` and `selection_<name>_plot` need no catalog entry of their own) and
`metrics` for the Kedro run's MLflow run. A new experiment is one more grid and analysis here:
see `lr_sweep`, and the README's "Adding an experiment".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sail_pipeline.engine.experiment import Experiment, Grid
from sail_pipeline.experiments import chance
from sail_pipeline.experiments.selection import experiments as designs
from sail_pipeline.experiments.selection import plots, schedule
from sail_pipeline.experiments.selection.point import SftPoints
from sail_pipeline.schema import SFT_STAGES, StatisticsParams

AVERAGE = designs.AVERAGE


@dataclass(frozen=True)
class SelectionInputs:
    """What every selection experiment's grid and analysis receive."""

    selection: Any  # SelectionParams
    sft: Any  # SftParams
    tables: dict[str, pd.DataFrame]  # candidate set -> its validated rows
    groups: dict[str, str]  # candidate set -> its group
    make: SftPoints
    statistics: StatisticsParams = field(default_factory=StatisticsParams)

    @property
    def mixtures(self) -> dict[str, Any]:
        return {stage: getattr(self.sft.mixtures, stage) for stage in SFT_STAGES}


def _published(points: pd.DataFrame) -> pd.DataFrame:
    # A point's wall time is telemetry (it differs between runs of the same point): it stays
    # in the store's result.json, out of the tables DVC tracks.
    return points.drop(columns=["seconds"], errors="ignore")


def _quality(points: pd.DataFrame, inputs: SelectionInputs) -> dict[str, Any]:
    stats, taus = designs.quality_ranking(points)
    level = inputs.statistics.level
    return {"selection_quality_points": _published(points),
            "selection_quality_ranking": stats,
            "selection_quality_tau": designs.tau_intervals(points, level),
            "selection_quality_plot": plots.quality_figure(stats, taus),
            "metrics": {f"selection/quality/tau_{a}_{b}": float(taus.loc[a, b])
                        for a in taus.index for b in taus.columns if a < b}}


def _composition(points: pd.DataFrame, inputs: SelectionInputs) -> dict[str, Any]:
    effects = designs.composition_effects(points, inputs.statistics.level)
    return {"selection_composition_points": _published(points),
            "selection_composition_effects": effects,
            "selection_composition_plot": plots.composition_figure(effects),
            "metrics": {f"selection/composition/{r.variant}": r.delta_mean
                        for r in effects.itertuples()}}


def _incremental(points: pd.DataFrame, inputs: SelectionInputs) -> dict[str, Any]:
    statistics = inputs.statistics
    params = inputs.selection.incremental
    trajectory, selected = designs.incremental_trajectory(points, params, statistics.alpha)
    return {"selection_incremental_points": _published(points),
            "selection_incremental_trajectory": trajectory,
            "selection_incremental_selected": {"selected": selected,
                                               "min_gain": params.min_gain,
                                               "alpha": statistics.alpha},
            "selection_incremental_plot": plots.incremental_figure(
                trajectory, params.min_gain, statistics.alpha),
            "metrics": {"selection/incremental/kept": float(len(selected))}}


def _schedule_grid(inputs: SelectionInputs) -> Grid:
    # Each row seen once, whatever the stage's budget in `sft`: the size is the data.
    stage_train = {stage: getattr(inputs.sft, stage).model_copy(
        update={"steps": None, "tokens": None, "epochs": 1.0}) for stage in SFT_STAGES}
    return designs.schedule_grid(inputs.selection.schedule, inputs.selection.seeds,
                                 inputs.mixtures, stage_train, inputs.tables, inputs.make)


def _schedule(points: pd.DataFrame, inputs: SelectionInputs) -> dict[str, Any]:
    statistics = inputs.statistics
    fits, comparisons, report = schedule.analyse(
        points, statistics, chance.levels_of(inputs.make.start.benchmark))
    average = next(c for c in comparisons if c["metric"] == AVERAGE)
    return {"selection_schedule_points": points, "selection_schedule_fits": fits,
            "selection_schedule_report": report,
            "selection_schedule_plot": schedule.figure(points, fits, statistics.level),
            "metrics": {f"selection/schedule/{key}": float(average[key])
                        for key in ("mean_diff", "slope_diff", "curvature_diff")}}


# --- an experiment added as a grid and an analysis (the README's worked example) ------------
# README.md, "Adding an experiment", shows these two functions as they are here (tested).


def _lr_sweep_grid(inputs: SelectionInputs) -> Grid:
    base = designs.composition_variants(inputs.selection.composition, inputs.groups)["base"]
    for seed in inputs.selection.seeds:
        table = designs.compose(inputs.tables, base, seed, key="composition.base")
        for factor in (0.5, 1.0, 2.0):
            train = inputs.selection.train.model_copy(
                update={"lr": inputs.selection.train.lr * factor})
            yield inputs.make(f"lr x{factor} seed={seed}", table, seed, train=train,
                              lr_factor=factor, seed=seed)


def _lr_sweep(points: pd.DataFrame, inputs: SelectionInputs) -> dict[str, Any]:
    by_factor = points.groupby("lr_factor")[AVERAGE].agg(["mean", "std", "count"])
    return {"selection_lr_sweep_points": points.drop(columns=["seconds"]),
            "metrics": {f"selection/lr_sweep/x{f}": m for f, m in by_factor["mean"].items()}}


def _quality_grid(inputs: SelectionInputs) -> Grid:
    return designs.quality_grid(inputs.selection.quality, inputs.selection.seeds,
                                inputs.tables, inputs.make)


def _composition_grid(inputs: SelectionInputs) -> Grid:
    return designs.composition_grid(inputs.selection.composition, inputs.selection.seeds,
                                    inputs.tables, inputs.groups, inputs.make)


def _incremental_grid(inputs: SelectionInputs) -> Grid:
    alpha = inputs.statistics.alpha
    return designs.incremental_grid(inputs.selection.incremental, inputs.selection.seeds,
                                    inputs.tables, inputs.make, alpha)


def _outputs(name: str, *tables: str, plot: bool = True) -> tuple[str, ...]:
    return (f"selection_{name}_points", *(f"selection_{name}_{t}" for t in tables),
            *((f"selection_{name}_plot",) if plot else ()))


SELECTION_EXPERIMENTS: dict[str, Experiment] = {experiment.name: experiment for experiment in (
    Experiment("quality", _quality_grid, _quality, _outputs("quality", "ranking", "tau")),
    Experiment("composition", _composition_grid, _composition,
               _outputs("composition", "effects")),
    Experiment("incremental", _incremental_grid, _incremental,
               _outputs("incremental", "trajectory", "selected"), adaptive=True),
    Experiment("schedule", _schedule_grid, _schedule, _outputs("schedule", "fits", "report")),
    Experiment("lr_sweep", _lr_sweep_grid, _lr_sweep, ("selection_lr_sweep_points",)),
)}
