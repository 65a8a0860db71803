"""Selection nodes: wiring only; the experiments are grids and analyses in
`sail_pipeline.experiments.selection.registry`, run by the engine."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.engine.experiment import Point, Tracker, run_experiment
from sail_pipeline.engine.progress import PointProgress
from sail_pipeline.experiments.selection import experiments
from sail_pipeline.experiments.selection.point import SftPoints, StartPoint
from sail_pipeline.experiments.selection.registry import SELECTION_EXPERIMENTS, SelectionInputs
from sail_pipeline.schema import SFT_STAGES
from sail_pipeline.sft_data.mixture import group_of

log = logging.getLogger(__name__)


def _tracker(experiment: str) -> Tracker:
    """Each point in its MLflow child run, under the experiment's run."""

    @contextmanager
    def track(point: Point) -> Iterator[Callable[[dict[str, Any]], None]]:
        slug = re.sub(r"[^A-Za-z0-9_+-]+", "_", point.label).strip("_")
        with lineage.instance(f"selection_{experiment}"), lineage.instance(slug):
            def report(result: dict[str, Any]) -> None:
                lineage.set_tags({"mlflow.runName": f"{experiment}: {point.label}",
                                  "sail.reused": str(result["reused"]).lower(),
                                  "sail.point_identity": result["identity"]})
                lineage.log_params({"experiment": experiment, "seed": point.chain.seed,
                                    **point.tags})
                lineage.log_metrics(result["scores"] | {"rows": float(point.tags["rows"])})

            yield report

    return track


def progress(name: str, total: int | None = None) -> PointProgress:
    """A line per point, and the counts on the Kedro run's MLflow run when it is tracked."""
    target = lineage.tracking_target()
    return PointProgress(name, total, run_id=target[1] if target else None)


def _inputs(names: list[str], tables: tuple) -> dict[str, pd.DataFrame]:
    return {name: t if isinstance(t, pd.DataFrame) else pd.read_parquet(t)
            for name, t in zip(names, tables, strict=True)}


def experiment_node(experiment: str, names: list[str]) -> Callable[..., dict[str, Any]]:
    """The node function of one experiment; its trailing inputs are the candidate tables in
    `names` order."""
    design = SELECTION_EXPERIMENTS[experiment]

    def run(selection, sft, runtime, statistics, advance: dict, benchmark: str,
            eval_table: str, store: str, *tables) -> dict[str, Any]:
        candidates = _inputs(names, tables)
        mixtures = {stage: getattr(sft.mixtures, stage) for stage in SFT_STAGES}
        experiments.check_sizes(selection.quality, selection.composition,
                                selection.incremental, {n: len(t) for n, t in candidates.items()},
                                selection.schedule if experiment == "schedule" else None,
                                mixtures)
        make = SftPoints(StartPoint(advance["hf_dir"], benchmark, eval_table),
                         selection.evaluation, selection.train)
        groups = {n: group_of(n, {k: v.group for k, v in sft.candidates.items()}) for n in names}
        outputs = run_experiment(design, runtime, store,
                                 SelectionInputs(selection, sft, candidates, groups, make,
                                                 statistics),
                                 tracker=_tracker(experiment),
                                 progress=progress(f"selection_{experiment}"))
        lineage.log_metrics(outputs.pop("metrics", {}))
        if experiment == "incremental":
            chosen = outputs["selection_incremental_selected"]
            log.info("Individual Select kept %s (paired one-sided t-test at alpha %g, gain "
                     "above %g)", chosen["selected"] or "nothing", chosen["alpha"],
                     chosen["min_gain"])
        return outputs

    run.__name__ = run.__qualname__ = f"selection_{experiment}"
    run.__doc__ = f"The {experiment} experiment on the candidate SFT sets."
    return run
