"""An experiment is a grid of points plus an analysis; the engine runs the points.

A *point* is (chain, data, seed): an `engine.chain.Chain` (its tables are its data) and the
fields that tell it from the grid's other points (`variant`, `n`, `seed`, ...). A *grid* is
a generator of points that is sent each point's result, so an adaptive design (Individual
Select keeps a candidate only if its scores rise) is a grid like any other. The *analysis*
turns the table of points (one row each: its fields, its scores) into the experiment's
outputs. Running, storing by identity, reusing and tracking are the engine's; where the
points run is `runtime.points`' (`engine.executor`: a grid that is not adaptive is drawn whole
and, on Ray, all its points run at once):

    experiment = Experiment("lr_sweep", grid=lr_grid, analyse=lr_table)
    outputs = run_experiment(experiment, runtime, store, inputs)

No Kedro here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipeline import lineage
from sail_pipeline.engine.chain import Chain
from sail_pipeline.engine.executor import Job, run_jobs
from sail_pipeline.engine.progress import PointProgress
from sail_pipeline.engine.store import Describe, run_stored
from sail_pipeline.schema import RuntimeParams

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Point:
    """One run of a chain: `label` names it for people (logs, MLflow run names), `fields` for
    the analysis (its row of the points table) and MLflow (its parameters)."""

    label: str
    chain: Chain
    fields: dict[str, Any] = field(default_factory=dict)
    keep: str = "none"  # the checkpoints kept in the store (engine.chain.run_chain)
    describe: Describe | None = None  # more of the chain's outcome in the stored result
    tags: dict[str, Any] = field(default_factory=dict)  # more for its tracking run


# A grid yields points and is sent each one's result.
Grid = Generator[Point, dict[str, Any], None]
# What runs around one point: its MLflow run (a context manager given the point and entered
# before it trains; `report(result)` logs what it scored). No tracking: `untracked`.
Tracker = Callable[[Point], AbstractContextManager[Callable[[dict[str, Any]], None]]]


@dataclass(frozen=True)
class Experiment:
    """`grid(*inputs)` -> points; `analyse(points table, *inputs)` -> `outputs` by name, and
    `metrics` (numbers for the tracking run)."""

    name: str
    grid: Callable[..., Grid]
    analyse: Callable[..., dict[str, Any]]
    outputs: tuple[str, ...] = ()
    # Its grid chooses a point from earlier points' results (Individual Select): the points
    # run one after another whatever the executor. Any other grid is drawn whole first, and
    # its points run where `runtime.points` says (on Ray: all at once).
    adaptive: bool = False


def untracked(point: Point) -> AbstractContextManager[Callable[[dict[str, Any]], None]]:
    return nullcontext(lambda result: None)


def run_point(point: Point, runtime: RuntimeParams, store: str | Path,
              tracker: Tracker = untracked) -> dict[str, Any]:
    """The point's result (from the store when its identity is there), in its tracked run."""
    with tracker(point) as report:
        result = run_stored(point.chain, runtime, store, point.label, keep=point.keep,
                            describe=point.describe)
        report(result)
    log.info("%s: %s", point.label, "reused" if result["reused"] else
             f"trained in {result['timing']['total_seconds']:.0f}s")
    return result


def point_row(point: Point, result: dict[str, Any]) -> dict[str, Any]:
    """The point's row of the points table: its fields, its scores, where it came from."""
    return {**point.fields, **result["scores"], "reused": result.get("reused", False),
            "identity": result.get("identity", ""),
            "seconds": result.get("timing", {}).get("total_seconds")}


def run_grid(grid: Grid, runtime: RuntimeParams, store: str | Path,
             tracker: Tracker = untracked, progress: PointProgress | None = None,
             adaptive: bool = True) -> pd.DataFrame:
    """Every point the grid yields (each result sent back): the points table. `progress`
    prints a line per point and counts them on its MLflow run. A grid that is not `adaptive`
    is drawn whole first and run by `runtime.points`' executor (`engine.executor`); an
    adaptive one, one point after another here."""
    if not adaptive and runtime.points.kind != "plain" and not runtime.launcher.dry_run:
        points = list(drive(grid, lambda point: {}))
        results = run_elsewhere([point for point, _ in points], runtime, store, tracker,
                                progress)
        return pd.DataFrame([point_row(point, result)
                             for (point, _), result in zip(points, results, strict=True)])

    def run(point: Point) -> dict[str, Any]:
        if progress is None:
            return run_point(point, runtime, store, tracker)
        progress.start(point.label)
        try:
            result = run_point(point, runtime, store, tracker)
        except Exception as error:
            progress.finish(point.label, None, error=f"{type(error).__name__}: {error}")
            raise
        progress.record(point.label, result)
        return result

    return pd.DataFrame([point_row(point, result) for point, result in drive(grid, run)])


def run_elsewhere(points: list[Point], runtime: RuntimeParams, store: str | Path,
                  tracker: Tracker = untracked, progress: PointProgress | None = None
                  ) -> list[dict[str, Any]]:
    """Each point's result, the points run by `runtime.points`' executor (on Ray: each a
    task, all submitted at once), in the order of `points`. Each point's tracking run is made
    here, before its task starts; its report is logged here when its result is back."""
    uri = None
    jobs = []
    for point in points:
        with tracker(point):  # the point's run, and its trainer runs' names, as in-process
            target, namespace = lineage.tracking_target(), lineage.current_namespace.get()
        if target is not None and uri is None:
            import mlflow

            uri = mlflow.get_tracking_uri()
        jobs.append(Job(point.label, functools.partial(
            run_stored, point.chain, runtime, str(Path(store).resolve()), point.label,
            point.keep, point.describe), (uri, *target) if target else None, namespace, point))
        if progress is not None:
            progress.start(point.label)
    results: dict[int, dict[str, Any]] = {}
    for job, outcome in run_jobs(jobs, (), runtime.points):
        if isinstance(outcome, BaseException):
            if progress is not None:
                progress.finish(job.label, None, error=f"{type(outcome).__name__}: {outcome}")
            raise outcome
        with tracker(job.key) as report:
            report(outcome)
        if progress is not None:
            progress.record(job.label, outcome)
        results[id(job.key)] = outcome
    return [results[id(point)] for point in points]


def drive(grid: Grid, run: Callable[[Point], dict[str, Any]]
          ) -> Iterator[tuple[Point, dict[str, Any]]]:
    """Each point of `grid` with its result from `run`, sent back to the grid before the next
    point is drawn (a test drives a grid with a planted scorer this way)."""
    try:
        point = next(grid)
        while True:
            result = run(point)
            yield point, result
            point = grid.send(result)
    except StopIteration:
        return


def run_experiment(experiment: Experiment, runtime: RuntimeParams, store: str | Path,
                   *inputs: Any, tracker: Tracker = untracked,
                   progress: PointProgress | None = None) -> dict[str, Any]:
    """Run the experiment's grid on `inputs`, then its analysis of the points table."""
    points = run_grid(experiment.grid(*inputs), runtime, store, tracker, progress,
                      adaptive=experiment.adaptive)
    log.info("%s: %d points (%d reused)", experiment.name, len(points),
             int(points["reused"].sum()) if len(points) else 0)
    outputs = experiment.analyse(points, *inputs)
    made = set(outputs) - {"metrics"}
    if made != set(experiment.outputs):
        raise ValueError(f"experiment {experiment.name}: its analysis returned {sorted(made)}, "
                         f"its declared outputs are {sorted(experiment.outputs)}")
    return outputs
