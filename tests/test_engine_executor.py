"""Where points run (`engine.executor`): the plain executor in order, errors handed back with
their point, logging into a named MLflow run, and a dead attempt's open runs deleted. The
Ray executor on a real cluster, with a killed worker: tests/test_scaling_ray.py."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sail_pipeline import lineage
from sail_pipeline.engine.executor import Job, close_dead_attempts, ray_job, run_jobs
from sail_pipeline.schema import PointExecutorParams


def test_plain_runs_in_order_and_hands_back_each_error_with_its_point():
    def point(value):
        def run(shared):
            if value == "bad":
                raise ValueError("no such table")
            return {"value": value, "shared": shared}
        return run

    jobs = [Job(v, point(v), key=v) for v in ("a", "bad", "c")]
    outcomes = list(run_jobs(jobs, ("pool",), PointExecutorParams()))
    assert [job.key for job, _ in outcomes] == ["a", "bad", "c"]
    assert outcomes[0][1] == {"value": "a", "shared": "pool"}
    assert isinstance(outcomes[1][1], ValueError)
    assert outcomes[2][1]["value"] == "c"


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_a_job_logs_into_its_named_run_with_no_active_run(tracking):
    experiment = tracking.create_experiment("points")
    point_run = tracking.create_run(experiment).info.run_id

    def run():
        assert lineage.current_namespace.get() == "reference_n16_s0"
        lineage.log_metrics({"pretrain/caption": 0.25})
        return {}

    job = Job("p", run, (mlflow.get_tracking_uri(), experiment, point_run), "reference_n16_s0")
    [(_, outcome)] = run_jobs([job], (), PointExecutorParams())
    assert outcome == {}
    assert tracking.get_run(point_run).data.metrics == {"pretrain/caption": 0.25}
    assert lineage.tracking_target() is None  # and nothing stays set after it


def test_a_retry_deletes_the_runs_a_dead_attempt_left_open(tracking):
    experiment = tracking.create_experiment("points")
    point_run = tracking.create_run(experiment).info.run_id
    dead = tracking.create_run(experiment, tags={MLFLOW_PARENT_RUN_ID: point_run}).info.run_id
    done = tracking.create_run(experiment, tags={MLFLOW_PARENT_RUN_ID: point_run}).info.run_id
    tracking.set_terminated(done)
    other = tracking.create_run(experiment).info.run_id  # open, but not this point's
    assert close_dead_attempts(point_run) == 1
    assert tracking.get_run(dead).info.lifecycle_stage == "deleted"
    assert tracking.get_run(done).info.lifecycle_stage == "active"
    assert tracking.get_run(other).info.lifecycle_stage == "active"


def test_a_grid_that_is_not_adaptive_runs_its_points_through_the_executor(tracking, monkeypatch):
    """`runtime.points.kind: ray`: a selection experiment's grid is drawn whole, its points
    go to the executor at once (here a stand-in that finishes them in reverse), each logs into
    the run the driver made for it, and the points table keeps the grid's order. An adaptive
    grid (Individual Select) still runs one point after another, each result sent back."""
    from contextlib import contextmanager

    from sail_pipeline.engine import experiment as engine
    from sail_pipeline.engine.experiment import Experiment, Point, run_experiment
    from sail_pipeline.schema import RuntimeParams

    submitted: list[list[str]] = []

    def executor(jobs, shared, settings):
        assert settings.kind == "ray"
        submitted.append([job.label for job in jobs])
        for job in reversed(jobs):  # what a Ray task does, here
            yield job, ray_job(job)

    def stored(chain, runtime, store, label, keep, describe):
        lineage.log_metrics({"trained": 1.0})  # into the point's run, wherever it runs
        return {"scores": {"score": float(chain)}, "reused": False, "identity": label,
                "timing": {"total_seconds": 1.0}}

    monkeypatch.setattr(engine, "run_jobs", executor)
    monkeypatch.setattr(engine, "run_stored", stored)
    experiment_id = tracking.create_experiment("selection")

    @contextmanager
    def tracker(point):  # as the selection nodes' tracker: a child run of the Kedro run
        with lineage.instance(point.label):
            yield lambda result: lineage.log_metrics({"reported": result["scores"]["score"]})

    sent: list[object] = []

    def grid(_):
        for k in range(3):
            sent.append((yield Point(f"p{k}", chain=k)))

    ray = RuntimeParams.model_validate({"points": {"kind": "ray"}})
    with mlflow.start_run(experiment_id=experiment_id) as kedro_run:
        parent = kedro_run.info.run_id
        outputs = run_experiment(Experiment("toy", grid, lambda points, _: {"points": points},
                                            ("points",)), ray, "store", None, tracker=tracker)
    assert submitted == [["p0", "p1", "p2"]]  # every point at once
    assert list(outputs["points"]["score"]) == [0.0, 1.0, 2.0]  # in the grid's order
    runs = tracking.search_runs([experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'")
    assert sorted((r.info.run_name, r.data.metrics["trained"], r.data.metrics["reported"])
                  for r in runs) == [("p0", 1.0, 0.0), ("p1", 1.0, 1.0), ("p2", 1.0, 2.0)]

    submitted.clear()
    sent.clear()
    outputs = run_experiment(Experiment("adaptive", grid, lambda points, _: {"points": points},
                                        ("points",), adaptive=True), ray, "store", None)
    assert submitted == [] and [r["scores"]["score"] for r in sent] == [0.0, 1.0, 2.0]
