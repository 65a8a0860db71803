"""A sweep on a real Ray cluster (`runtime.points.kind: ray`): a head and a second worker node
started on loopback, MLflow reached through `mlflow server` with a SQLite backend. A worker
is SIGKILLed while it trains a point; the sweep still ends with every point, each recorded
once (one MLflow child, no half-written folder), equal to the sequential sweep's. Then a
selection experiment's points on the same cluster, equal to its sequential run's."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import ViewType

from sail_pipeline.training.launcher import free_port
from tests.project import BIN, env, run

POINTS = ("reference_n16_s0", "reference_n32_s0")


def _results(project: Path) -> dict[str, dict]:
    return {ns: json.loads((project / f"data/07_model_output/scaling/{ns}.json").read_text())
            for ns in POINTS}


def _wait(condition, what: str, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _serve_mlflow(project: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{project / 'server.db'}", "--artifacts-destination",
         str(project / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=project, env=env(project), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status \
                == 200
        except OSError:
            return False

    _wait(healthy, "the MLflow server", 120)
    return server


def _ray(project: Path, token: dict[str, str], *args: str) -> None:
    result = run(project, str(BIN / "ray"), "start", "--node-ip-address=127.0.0.1",
                 "--num-cpus=1", "--disable-usage-stats", *args, **token)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _stop_ray(token: dict[str, str], port: int) -> None:
    """This cluster's processes only, found by its token (`ray stop` would stop every Ray on
    the machine)."""
    import psutil

    for process in psutil.process_iter():
        try:
            if process.environ().get("RAY_AUTH_TOKEN") == token["RAY_AUTH_TOKEN"]:
                process.kill()
        except psutil.Error:
            pass
    # What `ray stop` also removes: the note naming the running cluster, which a later
    # `ray.init()` without an address would try to join.
    current = Path("/tmp/ray/ray_current_cluster")
    if current.exists() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


@pytest.mark.slow
@pytest.mark.faults
def test_a_sweep_on_a_ray_cluster_survives_a_killed_worker(project_copy):
    project = project_copy
    store = project / "data/06_models/scaling"
    sequential = run(project, "kedro", "run", "--pipelines=scaling")
    assert sequential.returncode == 0, sequential.stdout[-3000:] + sequential.stderr[-3000:]
    expected = _results(project)
    shutil.rmtree(store)
    quality = project / "data/08_reporting/selection/quality_points.csv"
    selection = run(project, "kedro", "run", "--pipelines=selection", "--tags=selection_quality")
    assert selection.returncode == 0, selection.stderr[-3000:]
    expected_quality = pd.read_csv(quality)
    shutil.rmtree(project / "data/06_models/selection")

    mlflow_port, ray_port = free_port(), free_port()
    # Ray's token authentication, on every node and the driver (docs/guides/ray.md): a token
    # file that an earlier local Ray left in ~/.ray would otherwise lock the nodes out.
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
             "RAY_USAGE_STATS_ENABLED": "0"}
    server = _serve_mlflow(project, mlflow_port)
    try:
        _ray(project, token, "--head", f"--port={ray_port}", "--include-dashboard=false")
        _ray(project, token, f"--address=127.0.0.1:{ray_port}")  # a second node
        uri = f"http://127.0.0.1:{mlflow_port}"
        sweep = subprocess.Popen(
            [str(BIN / "kedro"), "run", "--pipelines=scaling", "--params",
             f"runtime.points={{kind: ray, ray_address: '127.0.0.1:{ray_port}'}}"],
            cwd=project, env=dict(env(project), MLFLOW_TRACKING_URI=uri, **token),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The worker training a point (the pid in its work folder's name), while a stage of
        # it has its MLflow run open.
        started = _wait(lambda: [run.parent.parent for run in store.glob(
            "*.partial-*/*/mlflow_run.json") if not (run.parent / "summary.json").exists()]
            if store.exists() else [], "a point's stage with its MLflow run open", timeout_s=600)
        killed_identity, _, victim = started[0].name.partition(".partial-")
        os.kill(int(victim), signal.SIGKILL)
        output, _ = sweep.communicate(timeout=900)
        assert sweep.returncode == 0, output[-4000:]
        on_ray = run(project, "kedro", "run", "--pipelines=selection", "--tags=selection_quality",
                     "--params", f"runtime.points={{kind: ray, ray_address: "
                     f"'127.0.0.1:{ray_port}'}}", MLFLOW_TRACKING_URI=uri, **token)
        assert on_ray.returncode == 0, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
        # Through the server, while it runs.
        mlflow.set_tracking_uri(uri)
        try:
            runs = mlflow.search_runs(search_all_experiments=True)
            every = mlflow.search_runs(search_all_experiments=True, run_view_type=ViewType.ALL)
        finally:
            mlflow.set_tracking_uri(None)
    finally:
        _stop_ray(token, ray_port)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    # Every point finished, none left half-written, and each equals the sequential run's.
    assert "2 points submitted to Ray" in output
    lines = [line for line in output.splitlines() if line.startswith("[") and "/2] " in line]
    assert len(lines) == 2 and not any("failed:" in line for line in lines), output[-4000:]
    assert not list(store.glob("*.partial-*"))
    results = _results(project)
    for namespace in POINTS:
        assert results[namespace]["identity"] == expected[namespace]["identity"]
        assert results[namespace]["scores"] == expected[namespace]["scores"]
        assert not results[namespace]["reused"]
    assert sorted(p.name for p in store.iterdir()) == sorted(
        r["identity"] for r in results.values())

    # One child run per point under the sweep's run, and each point's three stages once
    # (the killed attempt's open stage runs were deleted).
    [sweep_id] = runs[runs["tags.mlflow.runName"].str.startswith("scaling ·", na=False)]["run_id"]
    points = runs[runs["tags.mlflow.parentRunId"] == sweep_id]
    assert sorted(points["tags.mlflow.runName"]) == ["reference N=16 seed=0",
                                                      "reference N=32 seed=0"]
    for point_id in points["run_id"]:
        stages = runs[runs["tags.mlflow.parentRunId"] == point_id]
        assert sorted(stages["tags.mlflow.runName"].str.rpartition(".")[2]) == [
            "advance", "alignment", "knowledge"], stages[["tags.mlflow.runName", "status"]]
        assert set(stages["status"]) == {"FINISHED"}
    # The killed attempt's open stage run is there, deleted, under the point it was killed in.
    [killed] = [r for r in results.values() if r["identity"] == killed_identity]
    point_id = points[points["tags.sail.point_identity"] == killed["identity"]]["run_id"].iloc[0]
    deleted = every[(every["tags.mlflow.parentRunId"] == point_id)
                    & ~every["run_id"].isin(runs["run_id"])]
    assert len(deleted) == 1 and deleted["status"].iloc[0] == "RUNNING"

    # The selection experiment's points (not an adaptive grid) ran as Ray tasks, and equal
    # the sequential run's; each is a child of the experiment's run, its stage under it.
    assert f"{len(expected_quality)} points submitted to Ray" in on_ray.stdout + on_ray.stderr
    got = pd.read_csv(quality)
    assert not got["reused"].any()
    assert got.drop(columns=["reused"]).equals(expected_quality.drop(columns=["reused"]))
    quality_points = runs[runs["tags.mlflow.runName"].str.startswith("quality: ", na=False)]
    assert len(quality_points) == len(expected_quality)
    [experiment_run] = runs[runs["tags.sail.instance"] == "selection_quality"]["run_id"]
    assert set(quality_points["tags.mlflow.parentRunId"]) == {experiment_run}
    for point_id in quality_points["run_id"]:
        assert len(runs[runs["tags.mlflow.parentRunId"] == point_id]) == 1  # its SFT stage
