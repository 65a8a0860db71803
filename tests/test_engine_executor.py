"""Where points run (`engine.executor`): the plain executor in order, errors handed back with
their point, logging into a named MLflow run, and a dead attempt's open runs deleted. The
Ray executor on a real cluster, with a killed worker: tests/test_scaling_ray.py."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sail_pipeline import lineage
from sail_pipeline.engine.executor import Job, close_dead_attempts, run_jobs
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
