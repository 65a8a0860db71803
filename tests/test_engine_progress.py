"""A sweep's progress: one line per point done with the time left, counts in MLflow; and a
sweep's shared inputs read once (`glue.hooks.SharedInputsHook`)."""

from __future__ import annotations

import re

import mlflow
import pandas as pd
import pytest
from kedro.io import AbstractDataset, DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner

from sail_pipeline.engine.experiment import Experiment, Point, run_experiment
from sail_pipeline.engine.progress import PointProgress, duration
from sail_pipeline.glue.hooks import SharedInputsHook
from sail_pipeline.schema import RuntimeParams


def test_durations_read_as_a_person_says_them():
    assert duration(14.2) == "14s"
    assert duration(240) == "4 min"
    assert duration(3900) == "1 h 05 min"


def test_a_line_per_point_with_the_time_left_and_failures_named():
    lines: list[str] = []
    progress = PointProgress("scaling", total=4, say=lines.append)
    progress.started -= 20  # 20 s in when the first point ends...
    progress.start("a")
    progress.finish("reference N=16 seed=0", 12.4)
    progress.start("b")
    progress.finish("reference N=32 seed=0", 0.1, reused=True)
    progress.start("c")
    progress.finish("alt_text N=16 seed=0", None, error="Traceback...\nValueError: bad table")
    assert lines[0].startswith("[1/4] reference N=16 seed=0: trained in 12s · 3 left, about ")
    # ...so about 60 s (3 points x 20 s) are left
    assert re.search(r"about 6\ds$", lines[0]), lines[0]
    assert lines[1].startswith("[2/4] reference N=32 seed=0: reused · 2 left")
    assert lines[2].startswith("[3/4] alt_text N=16 seed=0: failed: ValueError: bad table")
    progress.start("d")
    assert progress.summary() == "3 of 4 done (1 reused), 1 running, 1 failed"
    last = progress.finish("alt_text N=32 seed=0", 3.0)
    assert re.search(r"\[4/4\] .* · all 4 done in \d+s$", last)


def test_counts_go_to_the_experiment_run_with_the_points_done_as_the_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        run_id = client.create_run(client.create_experiment("progress")).info.run_id
        progress = PointProgress("scaling", total=2, run_id=run_id, say=lambda line: None)
        progress.start("a")
        running = client.get_run(run_id).data
        assert running.tags["sail.progress.scaling"] == "0 of 2 done (0 reused), 1 running, " \
                                                        "0 failed"
        progress.finish("a", 1.0)
        progress.start("b")
        progress.finish("b", None, error="RuntimeError: boom")
        data = client.get_run(run_id).data
        assert data.tags["sail.progress.scaling"] == "2 of 2 done (0 reused), 0 running, 1 failed"
        assert data.metrics["progress/scaling/done"] == 2
        assert data.metrics["progress/scaling/running"] == 0
        assert data.metrics["progress/scaling/failed"] == 1
        history = client.get_metric_history(run_id, "progress/scaling/done")
        assert sorted({(m.step, m.value) for m in history}) == [(0, 0), (1, 1), (2, 2)]
    finally:
        mlflow.set_tracking_uri(None)


def test_a_broken_tracking_server_never_stops_the_sweep(tmp_path):
    lines: list[str] = []
    progress = PointProgress("scaling", total=1, run_id="no-such-run", say=lines.append)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        progress.start("a")
        progress.finish("a", 1.0)
    finally:
        mlflow.set_tracking_uri(None)
    assert progress.run_id is None and lines[0].startswith("[1/1] a: trained in 1s")


def test_the_engine_counts_an_experiments_points(tmp_path, monkeypatch):
    """`run_experiment(..., progress=)`: a line for each point of an (adaptive) grid, whose
    total is not known ahead."""

    def grid(_):
        for label in ("x", "y"):
            yield Point(label, chain=None)

    lines: list[str] = []
    progress = PointProgress("toy", say=lines.append)

    def fake_run_point(point, runtime, store, tracker):
        return {"scores": {"s": 1.0}, "reused": point.label == "y",
                "timing": {"total_seconds": 2.0}}

    import sail_pipeline.engine.experiment as engine

    monkeypatch.setattr(engine, "run_point", fake_run_point)
    run_experiment(Experiment("toy", grid=grid, analyse=lambda points, _: {}), RuntimeParams(),
                   tmp_path, None, progress=progress)
    assert lines == ["[1] x: trained in 2s", "[2] y: reused"]


class _CountingDataset(AbstractDataset):
    def __init__(self) -> None:
        self.loads = 0

    def _load(self) -> pd.DataFrame:
        self.loads += 1
        return pd.DataFrame({"id": [1, 2]})

    def _save(self, data) -> None:
        raise NotImplementedError

    def _describe(self) -> dict:
        return {}


def _sweep(points: int) -> Pipeline:
    return Pipeline([node(lambda pool, n=n: len(pool) + n, ["pool", "params:k"], f"out_{n}",
                          name=f"point_{n}", tags=["scaling_point"]) for n in range(points)])


@pytest.mark.parametrize("points", [1, 3])
def test_a_sweeps_shared_input_is_read_once(points):
    pool = _CountingDataset()
    catalog = DataCatalog({"pool": pool, "params:k": MemoryDataset(1)})
    pipeline = _sweep(points)
    SharedInputsHook().before_pipeline_run({}, pipeline, catalog)
    SequentialRunner().run(pipeline, catalog)
    # one point reads it once anyway; three read it once between them, not three times
    assert pool.loads == 1


def test_a_shared_path_input_made_in_the_same_run_reaches_the_points_as_its_path(tmp_path):
    """What a node saves is not what the points load: a table goes in as a DataFrame and
    comes out as its Parquet path (`glue.io.ParquetPathDataset`)."""
    from sail_pipeline.glue.io import ParquetPathDataset

    table = ParquetPathDataset(filepath=str(tmp_path / "sft.parquet"))
    catalog = DataCatalog({"sft": table, "params:k": MemoryDataset(1)})
    seen = []
    pipeline = Pipeline([node(lambda: pd.DataFrame({"id": [1]}), None, "sft", name="make")] + [
        node(lambda path, k, n=n: seen.append(path) or n, ["sft", "params:k"], f"out_{n}",
             name=f"point_{n}", tags=["scaling_point"]) for n in range(2)])
    SharedInputsHook().before_pipeline_run({}, pipeline, catalog)
    SequentialRunner().run(pipeline, catalog)
    assert seen == [str(tmp_path / "sft.parquet")] * 2
